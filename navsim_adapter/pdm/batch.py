"""SceneBatch: the arrays of several ScoringContexts, padded to common sizes.

Why: scoring one scene is dominated by Python/numpy call overhead, not arithmetic (a few hundred
candidate states against a handful of agents and polygons). Packed side by side, the geometry and
metrics of every scene run as one vectorised pass whose number of numpy calls does not grow with
the number of scenes. Padding is inert: padded agents are never valid, padded polygons have NaN
bounds, padded red lights are never active and centreline padding is masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.geometry import PolygonTable


@dataclass
class SceneBatch:
    """B scenes, agents padded to M tracks and T_max steps (per-scene T kept in `agent_steps`)."""

    contexts: list[ScoringContext]
    agent_boxes: np.ndarray  # [B, T_max, M, 5] x, y, heading, length, width
    agent_valid: np.ndarray  # [B, T_max, M]
    agent_is_agent: np.ndarray  # [B, M] moving kinds (hit at fault = 0, else 0.5)
    first_seen_speed: np.ndarray  # [B, M] speed when the track first appears (nuPlan is_track_stopped)
    agent_steps: np.ndarray  # [B] T of each scene
    lanes: PolygonTable
    drivable: PolygonTable
    route_lanes: PolygonTable
    intersections: PolygonTable
    red_lights: PolygonTable
    red_active: np.ndarray  # [B, T_max, K]
    centerline: np.ndarray  # [B, P_max, 2] (x, y), padded with each line's last vertex
    centerline_segments: np.ndarray  # [B] number of real segments of each centreline

    def __len__(self) -> int:
        return len(self.contexts)

    @classmethod
    def from_contexts(cls, contexts: list[ScoringContext]) -> SceneBatch:
        b = len(contexts)
        steps = np.array([c.agent_boxes.shape[0] for c in contexts], dtype=np.int64)
        t_max = max(int(steps.max()), max(c.red_light_active.shape[0] for c in contexts))
        m = max(c.num_agents for c in contexts)
        k = max(len(c.red_light_ids) for c in contexts)
        p = max(len(c.centerline) for c in contexts)
        boxes = np.zeros((b, t_max, m, 5))
        valid = np.zeros((b, t_max, m), dtype=bool)
        is_agent = np.zeros((b, m), dtype=bool)
        first_speed = np.zeros((b, m))
        red = np.zeros((b, t_max, k), dtype=bool)
        line = np.empty((b, p, 2))
        for i, c in enumerate(contexts):
            t, n = c.agent_boxes.shape[:2]
            boxes[i, :t, :n] = c.agent_boxes
            valid[i, :t, :n] = c.agent_valid
            is_agent[i, :n] = c.agent_is_agent
            first_speed[i, :n] = c.first_seen_speed
            red[i, : c.red_light_active.shape[0], : c.red_light_active.shape[1]] = c.red_light_active
            line[i, : len(c.centerline)] = c.centerline[:, :2]
            line[i, len(c.centerline) :] = c.centerline[-1, :2]
        return cls(
            contexts=list(contexts),
            agent_boxes=boxes,
            agent_valid=valid,
            agent_is_agent=is_agent,
            first_seen_speed=first_speed,
            agent_steps=steps,
            lanes=PolygonTable.stack([c.lane_set for c in contexts]),
            drivable=PolygonTable.stack([c.drivable_set for c in contexts]),
            route_lanes=PolygonTable.stack([c.route_lane_set for c in contexts]),
            intersections=PolygonTable.stack([c.intersection_set for c in contexts]),
            red_lights=PolygonTable.stack([c.red_light_set for c in contexts]),
            red_active=red,
            centerline=line,
            centerline_segments=np.array([len(c.centerline) - 1 for c in contexts], dtype=np.int64),
        )
