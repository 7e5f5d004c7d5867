"""PDM sub-metrics (stage 2): geometry arrays -> per-candidate scores, for [B, K] rows at once.

Definitions and constants: NAVSIM v2's PDM scorer with non-reactive traffic (navsim_adapter/pdm/README.md).
Stage 1, `queries.batch_geometry` (`scene_geometry` for one scene), does every geometric query
(map areas, box contacts, centreline projections); the functions here reduce those arrays.
Every function accepts any leading dims ([K] for one scene, [B, K] for a batch).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import savgol_filter

from navsim_adapter.pdm.batch import SceneBatch
from navsim_adapter.pdm.config import METRICS, MetricConfig
from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.geometry import PACIFICA
from navsim_adapter.pdm.queries import SceneGeometry, batch_geometry, scene_geometry
from navsim_adapter.pdm.simulation import AX, AY, DT, HEADING, VX, VY, YAW_ACCEL, YAW_RATE, rows_times

__all__ = ["METRICS", "MetricConfig", "SceneGeometry", "batch_geometry", "scene_geometry"]

# nuPlan comfort bounds.
MAX_ABS_MAG_JERK = 8.37
MAX_ABS_LAT_ACCEL = 4.89
MAX_LON_ACCEL = 2.40
MIN_LON_ACCEL = -4.05
MAX_ABS_YAW_ACCEL = 1.93
MAX_ABS_LON_JERK = 4.13
MAX_ABS_YAW_RATE = 0.95
# Two-frame extended comfort RMS bounds.
EC_ACCEL, EC_JERK, EC_YAW_RATE, EC_YAW_ACCEL = 0.7, 0.5, 0.1, 0.1


def _relative_angle(ego_pose: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Angle between ego heading and the direction to `point` (nuPlan get_agent_relative_angle)."""
    v = point - ego_pose[..., :2]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = v / np.linalg.norm(v, axis=-1, keepdims=True)
        return np.arccos(np.cos(ego_pose[..., 2]) * u[..., 0] + np.sin(ego_pose[..., 2]) * u[..., 1])


def no_at_fault_collision(
    batch: SceneBatch, states: np.ndarray, g: SceneGeometry, cfg: MetricConfig = METRICS
) -> np.ndarray:
    """NC [B, K] in {0, 0.5, 1}: decided by the first contact with every track."""
    score = np.ones(g.collision_first.shape[:2])
    b, k, m = np.nonzero(g.collision_first >= 0)
    if not len(b):
        return score
    ts = g.collision_first[b, k, m]
    st = states[b, k, ts]
    ego_stopped = np.hypot(st[:, VX], st[:, VY]) <= cfg.collision_stopped_speed
    # nuPlan's is_track_stopped looks at the track as first seen (non-agents always count as stopped).
    is_agent = batch.agent_is_agent[b, m]
    track_stopped = ~is_agent | (batch.first_seen_speed[b, m] <= cfg.collision_stopped_speed)
    behind = _relative_angle(st[:, :3], batch.agent_boxes[b, ts, m, :2]) > np.deg2rad(cfg.behind_angle_deg)
    lateral_at_fault = g.area_at("multiple_lanes", b, k, ts) | g.non_drivable[b, k, ts]
    at_fault = ~ego_stopped & (track_stopped | (~behind & (g.collision_front[b, k, m] | lateral_at_fault)))
    value = np.where(is_agent, 0.0, 0.5)
    np.minimum.at(score, (b[at_fault], k[at_fault]), value[at_fault])
    return score


def time_to_collision(
    batch: SceneBatch,
    states: np.ndarray,
    g: SceneGeometry,
    full_horizon: bool = False,
    cfg: MetricConfig = METRICS,
) -> np.ndarray:
    """TTC [B, K] in {0, 1}: 0 if the first projected contact with some track is ahead / not behind."""
    first = g.ttc_first_full if full_horizon else g.ttc_first
    score = np.ones(first.shape[:2])
    b, k, m = np.nonzero(first >= 0)
    if not len(b):
        return score
    n_off = len(cfg.ttc_offsets)
    ts, js = first[b, k, m] // n_off, first[b, k, m] % n_off
    offsets = np.asarray(cfg.ttc_offsets)[js]
    rear = states[b, k, ts, :3]
    track = batch.agent_boxes[b, ts + offsets, m, :2]
    angle = _relative_angle(rear, track)
    ahead = angle < np.deg2rad(cfg.ahead_angle_deg)
    behind = angle > np.deg2rad(cfg.behind_angle_deg)
    risky_area = g.area_at("multiple_lanes", b, k, ts) | g.non_drivable[b, k, ts]
    risky_area |= g.area_at("rear_in_intersection", b, k, ts)
    violation = ahead | (risky_area & ~behind)
    score[b[violation], k[violation]] = 0.0
    return score


def drivable_area_compliance(g: SceneGeometry) -> np.ndarray:
    return np.where(g.non_drivable.any(-1), 0.0, 1.0)


def traffic_light_compliance(g: SceneGeometry) -> np.ndarray:
    return np.where(g.red_light, 0.0, 1.0)


def driving_direction_compliance(
    g: SceneGeometry, cfg: MetricConfig = METRICS, exclude_intersections: bool = True
) -> np.ndarray:
    """DDC: max distance driven against traffic within any 1 s window (v2 excludes intersections, v1 not)."""
    step = np.zeros(g.center.shape[:-1])
    step[..., 1:] = np.linalg.norm(g.center[..., 1:, :] - g.center[..., :-1, :], axis=-1)
    against = g.oncoming & ~g.center_in_intersection if exclude_intersections else g.oncoming
    step[~against] = 0.0
    horizon = int(cfg.driving_direction_horizon / DT)
    c = np.concatenate([np.zeros(step.shape[:-1] + (1,)), np.cumsum(step, axis=-1)], axis=-1)
    idx = np.arange(step.shape[-1])
    window = c[..., idx + 1] - c[..., np.maximum(0, idx - horizon)]
    worst = window.max(-1)
    return np.where(
        worst < cfg.driving_direction_compliance_threshold,
        1.0,
        np.where(worst < cfg.driving_direction_violation_threshold, 0.5, 0.0),
    )


def lane_keeping(g: SceneGeometry, cfg: MetricConfig = METRICS) -> np.ndarray:
    """LK: 0 after >= 2 s of consecutive (non-intersection) steps more than 0.5 m off the centreline.

    Intersection steps neither count nor reset the run: the run length at a step is the number of
    counted exceeding steps since the last counted step within the limit."""
    need = int(np.ceil(cfg.lane_keeping_horizon_window / DT))
    counted = ~g.center_in_intersection
    hit = counted & g.off_centerline
    reset = counted & ~g.off_centerline
    steps = np.arange(hit.shape[-1])
    last_reset = np.maximum.accumulate(np.where(reset, steps, -1), axis=-1)
    c = np.concatenate([np.zeros(hit.shape[:-1] + (1,), dtype=np.int64), np.cumsum(hit, axis=-1)], axis=-1)
    run = c[..., 1:] - np.take_along_axis(c, last_reset + 1, axis=-1)
    return np.where((hit & (run >= need)).any(-1), 0.0, 1.0)


def normalized_progress(
    progress: np.ndarray,
    multiplier: np.ndarray,
    reference_masked: np.ndarray | float,
    cfg: MetricConfig = METRICS,
) -> np.ndarray:
    """EP (v2): raw / max(masked reference, masked self), 1 when that maximum is under 5 m."""
    norm = np.maximum(reference_masked, progress * multiplier)
    with np.errstate(invalid="ignore", divide="ignore"):
        ep = np.clip(progress / norm, 0.0, 1.0)
    return np.where(norm > cfg.progress_distance_threshold, ep, 1.0)


def normalized_progress_v1(progress, multiplier, reference_masked, cfg: MetricConfig = METRICS) -> np.ndarray:
    """EP (v1): masked raw / max(masked), 1 when that maximum is under 5 m."""
    masked = progress * multiplier
    norm = np.maximum(reference_masked, masked)
    with np.errstate(invalid="ignore", divide="ignore"):
        ep = masked / norm
    return np.where(norm > cfg.progress_distance_threshold, ep, 1.0)


# ---- comfort ------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _savgol_operator(n: int, window: int, poly: int, deriv: int, delta: float) -> np.ndarray:
    """[n, n] matrix W with savgol_filter(y) == y @ W (the filter, edges included, is linear)."""
    return savgol_filter(
        np.eye(n), window_length=min(window, n), polyorder=poly, deriv=deriv, delta=delta, axis=-1
    )


def _savgol(y: np.ndarray, window: int, poly: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    """scipy's Savitzky-Golay filter (mode 'interp') along the last axis, as one row-wise product."""
    return rows_times(y, _savgol_operator(y.shape[-1], window, poly, deriv, delta))


def _acceleration(states: np.ndarray, coordinate: str) -> np.ndarray:
    """Smoothed acceleration [K, T]: 'x' / 'y' at the vehicle centre, or 'magnitude' at the rear axle."""
    if coordinate == "x":
        d = PACIFICA.rear_axle_to_center
        acc = states[..., AX] + d * states[..., YAW_RATE] ** 2 + d * states[..., YAW_ACCEL]
    elif coordinate == "y":
        acc = states[..., AY] + 0.0
    else:
        acc = np.hypot(states[..., AX], states[..., AY])
    return np.round(_savgol(acc, 8, 2), 8)


@lru_cache(maxsize=64)
def _time_delta(n: int) -> float:
    return float(np.diff(np.arange(n, dtype=np.float64) * DT).mean())


def _jerk(states: np.ndarray, coordinate: str) -> np.ndarray:
    n = states.shape[1]
    return np.round(_savgol(_acceleration(states, coordinate), 15, 2, 1, _time_delta(n)), 8)


def _yaw_derivative(states: np.ndarray, deriv: int, poly: int) -> np.ndarray:
    h = states[..., HEADING]
    adj = np.zeros_like(h)
    adj[:, 1:] = np.cumsum(np.round(np.diff(h, axis=-1) / (2 * np.pi)), axis=-1)
    unwrapped = h - 2 * np.pi * adj
    # NAVSIM passes no window here, so its default of 5 applies (not 15).
    return np.round(_savgol(unwrapped, 5, poly, deriv, _time_delta(h.shape[1])), 8)


def _within(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ((x > lo) & (x < hi)).all(-1)


def comfort(states: np.ndarray) -> np.ndarray:
    """1 if all six nuPlan comfort quantities stay in bounds over states [K, T, 11]."""
    ok = _within(_acceleration(states, "x"), MIN_LON_ACCEL, MAX_LON_ACCEL)
    ok &= _within(_acceleration(states, "y"), -MAX_ABS_LAT_ACCEL, MAX_ABS_LAT_ACCEL)
    ok &= _within(_jerk(states, "magnitude"), -MAX_ABS_MAG_JERK, MAX_ABS_MAG_JERK)
    ok &= _within(_jerk(states, "x"), -MAX_ABS_LON_JERK, MAX_ABS_LON_JERK)
    ok &= _within(_yaw_derivative(states, 2, 3), -MAX_ABS_YAW_ACCEL, MAX_ABS_YAW_ACCEL)
    ok &= _within(_yaw_derivative(states, 1, 2), -MAX_ABS_YAW_RATE, MAX_ABS_YAW_RATE)
    return ok.astype(np.float64)


def history_comfort(states: np.ndarray, past_states: np.ndarray | None) -> np.ndarray:
    """HC: comfort over the logged past (0.1 s states) followed by the simulated states."""
    if past_states is None or len(past_states) == 0:
        return np.ones(states.shape[0])
    past = np.broadcast_to(past_states, (states.shape[0],) + past_states.shape)
    return comfort(np.concatenate([past, states], axis=1))


def extended_comfort(states: np.ndarray, prev_states: np.ndarray, overlap_start: int = 5) -> np.ndarray:
    """EC: RMS differences of comfort signals between this frame's and the previous frame's plan.

    states, prev_states: [K, T, 11]; the previous plan started `overlap_start` steps (0.5 s) earlier.
    """
    cur, prev = states[:, :-overlap_start], prev_states[:, overlap_start:]

    def feats(s):
        return (
            _acceleration(s, "magnitude"),
            _jerk(s, "magnitude"),
            _yaw_derivative(s, 1, 2),
            _yaw_derivative(s, 2, 2),
        )

    ok = np.ones(states.shape[0], dtype=bool)
    for a, b, bound in zip(
        feats(cur), feats(prev), (EC_ACCEL, EC_JERK, EC_YAW_RATE, EC_YAW_ACCEL), strict=True
    ):
        ok &= np.sqrt(np.mean((a - b) ** 2, axis=1)) <= bound
    return ok.astype(np.float64)


def subscores(ctx: ScoringContext, states: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row sub-scores of already simulated states [K, T, 11] of one scene: no progress
    normalisation and no human filter (those need the reference / human rows, see scorer.score)."""
    batch = SceneBatch.from_contexts([ctx])
    g = batch_geometry(batch, states[None])
    return {
        "nc": no_at_fault_collision(batch, states[None], g)[0],
        "dac": drivable_area_compliance(g)[0],
        "ddc": driving_direction_compliance(g)[0],
        "tlc": traffic_light_compliance(g)[0],
        "ttc": time_to_collision(batch, states[None], g)[0],
        "lk": lane_keeping(g)[0],
        "comfort": comfort(states),
        "hc": history_comfort(states, ctx.past_states),
        "progress": g.progress[0],
    }
