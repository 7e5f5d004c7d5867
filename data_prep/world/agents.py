"""Other road users: IDM vehicles on lane paths, pedestrians on straight walks, static objects.

Vehicles follow the Intelligent Driver Model towards the nearest object ahead in their lane (the
ego included) and stop at red lights, so scenes stay plausible without a planner per agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_prep.world.paths import Path
from navsim_adapter.geometry import global_to_local

# NAVSIM / OpenScene box class names.
VEHICLE, PEDESTRIAN, BICYCLE = "vehicle", "pedestrian", "bicycle"
TRAFFIC_CONE, BARRIER, CZONE_SIGN, GENERIC_OBJECT = "traffic_cone", "barrier", "czone_sign", "generic_object"

SIZES = {  # length, width, height
    VEHICLE: (4.6, 1.9, 1.6),
    PEDESTRIAN: (0.6, 0.6, 1.75),
    BICYCLE: (1.8, 0.6, 1.6),
    TRAFFIC_CONE: (0.4, 0.4, 0.7),
    BARRIER: (0.4, 2.0, 1.0),
    CZONE_SIGN: (0.3, 0.8, 1.6),
    GENERIC_OBJECT: (1.0, 1.0, 1.0),
}


def idm_accel(
    v: float, v0: float, gap: float, dv: float, a_max: float, b: float, T: float, s0: float
) -> float:
    """Intelligent Driver Model acceleration; `dv` = own speed minus leader speed."""
    v0 = max(v0, 0.1)
    # Above the desired speed, slow down gently instead of IDM's quartic free-road term, so a
    # lowered desired speed (curve ahead, hesitation) never reads as an emergency stop.
    slow_down = -min(b, 0.8 * (v - v0)) if v > v0 else 0.0
    free = 1.0 - (max(v, 0.0) / v0) ** 4 if v <= v0 else 0.0
    if not np.isfinite(gap):
        return a_max * free + slow_down
    s_star = s0 + max(0.0, v * T + v * dv / (2.0 * np.sqrt(a_max * b)))
    return a_max * (free - (s_star / max(gap, 0.1)) ** 2) + slow_down


def curve_accel(path: Path, s: float, v: float, a_lat: float = 2.0) -> float:
    """Acceleration needed now to be at the comfortable cornering speed sqrt(a_lat / kappa) at
    every bend within the braking distance ahead (+inf when no bend needs braking)."""
    if path.max_abs_curvature < 1e-4:
        return np.inf
    d = np.linspace(1.0, 12.0 + 4.0 * v, 24)
    kappa = np.abs(path.curvature(s + d)) + 1e-6
    need = (a_lat / kappa - v * v) / (2.0 * d)
    worst = float(need.min())
    return worst if worst < 0 else np.inf


@dataclass
class StopLine:
    """A signalised stop line at arc length `s` of a vehicle's path."""

    s: float
    connector_id: str


@dataclass
class Vehicle:
    """A vehicle (or bicycle) whose box centre moves along `path` at arc length `s`."""

    track: str
    path: Path
    s: float
    v: float
    v0: float
    name: str = VEHICLE
    size: tuple[float, float, float] = SIZES[VEHICLE]
    a_max: float = 1.5
    b: float = 2.5
    T: float = 1.4
    s0: float = 2.5
    stops: list[StopLine] = field(default_factory=list)
    brake_at: float | None = None  # scripted braking (lead-vehicle family)
    brake_to: float = 0.0
    brake_decel: float = 3.0
    brake_until: float = np.inf
    a: float = 0.0
    _cached: tuple[float, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def pose(self) -> np.ndarray:
        if self._cached is None or self._cached[0] != self.s:  # queried many times per step
            self._cached = (self.s, self.path.at(self.s))
        return self._cached[1]

    def velocity(self) -> np.ndarray:
        h = self.pose()[2]
        return self.v * np.array([np.cos(h), np.sin(h)])


@dataclass
class Pedestrian:
    """Walks from `start` along `heading` at `speed` between `t_start` and `t_start + distance / speed`."""

    track: str
    start: np.ndarray
    heading: float
    speed: float
    t_start: float
    distance: float
    name: str = PEDESTRIAN
    size: tuple[float, float, float] = SIZES[PEDESTRIAN]
    walked: float = 0.0
    v: float = 0.0

    def pose(self) -> np.ndarray:
        d = np.array([np.cos(self.heading), np.sin(self.heading)])
        return np.array([*(self.start + self.walked * d), self.heading])

    def velocity(self) -> np.ndarray:
        return self.v * np.array([np.cos(self.heading), np.sin(self.heading)])


@dataclass
class Static:
    track: str
    pose_xyh: np.ndarray
    name: str
    size: tuple[float, float, float]
    v: float = 0.0

    def pose(self) -> np.ndarray:
        return self.pose_xyh

    def velocity(self) -> np.ndarray:
        return np.zeros(2)


Agent = Vehicle | Pedestrian | Static


def _leader_gap(
    me: Vehicle, pose: np.ndarray, others: list[tuple[np.ndarray, float, float]], lookahead: float = 60.0
) -> tuple[float, float]:
    """Bumper gap and speed of the nearest box ahead within half a lane of `me`'s heading line."""
    best_gap, best_v = np.inf, 0.0
    if not others:
        return best_gap, best_v
    local = global_to_local(np.array([xy[:2] for xy, _, _ in others]), pose)
    for (lon, lat), (_, length, v) in zip(local, others, strict=True):
        if 0.0 < lon < lookahead and abs(lat) < 1.6:
            gap = lon - me.size[0] / 2 - length / 2
            if gap < best_gap:
                best_gap, best_v = gap, v
    return best_gap, best_v


def step_agents(
    agents: list[Agent], ego_box: tuple[np.ndarray, float, float], t: float, dt: float, is_red
) -> None:
    """Advance every agent by `dt`; `ego_box` = (xy, length, speed); `is_red(connector_id, t)`."""
    boxes = [(a.pose()[:2], a.size[0], a.v) for a in agents] + [ego_box]
    for k, agent in enumerate(agents):
        if isinstance(agent, Vehicle):
            pose = agent.pose()
            others = boxes[:k] + boxes[k + 1 :]
            gap, v_lead = _leader_gap(agent, pose, others)
            for stop in agent.stops:
                to_line = stop.s - agent.s - agent.size[0] / 2
                braking = agent.v**2 / (2 * 4.0)
                if (
                    to_line > -0.5
                    and to_line > braking - 2.0
                    and is_red(stop.connector_id, t)
                    and to_line < gap
                ):
                    gap, v_lead = max(to_line, 0.0) + 0.5, 0.0
            v0 = agent.v0
            if agent.brake_at is not None and agent.brake_at <= t < agent.brake_until:
                v0 = agent.brake_to
                acc = -agent.brake_decel if agent.v > v0 else 0.0
                acc = min(
                    acc,
                    idm_accel(
                        agent.v, max(v0, 0.1), gap, agent.v - v_lead, agent.a_max, agent.b, agent.T, agent.s0
                    ),
                )
            else:
                acc = idm_accel(agent.v, v0, gap, agent.v - v_lead, agent.a_max, agent.b, agent.T, agent.s0)
                acc = min(acc, curve_accel(agent.path, agent.s, agent.v))
            agent.a = float(np.clip(acc, -8.0, agent.a_max))
            agent.v = max(0.0, agent.v + agent.a * dt)
            agent.s += agent.v * dt
        elif isinstance(agent, Pedestrian):
            moving = agent.t_start <= t and agent.walked < agent.distance
            agent.v = agent.speed if moving else 0.0
            agent.walked = min(agent.distance, agent.walked + agent.v * dt)
