"""Scorer thresholds (NAVSIM PDMScorerConfig defaults), shared by the geometry and metric stages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricConfig:
    """Scorer thresholds (NAVSIM PDMScorerConfig defaults)."""

    driving_direction_horizon: float = 1.0
    driving_direction_compliance_threshold: float = 2.0
    driving_direction_violation_threshold: float = 6.0
    stopped_speed_threshold: float = 5e-3  # TTC
    collision_stopped_speed: float = 5e-2  # collision classification (ego and track)
    ttc_offsets: tuple[int, ...] = (0, 3, 6, 9)  # steps of 0.1 s: np.arange(0, int(1.0 * 10), 3)
    progress_distance_threshold: float = 5.0
    lane_keeping_deviation_limit: float = 0.5
    lane_keeping_horizon_window: float = 2.0
    ahead_angle_deg: float = 30.0
    behind_angle_deg: float = 150.0


METRICS = MetricConfig()
