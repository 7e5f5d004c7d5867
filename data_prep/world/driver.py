"""The logged "human" ego: a rule-based driver that is good but imperfect.

Lateral control is pure pursuit on the route's lane path (with lane changes around stopped
obstacles), longitudinal control is IDM towards whatever is ahead (vehicle, pedestrian, static
object, red light) capped by a curvature speed limit. Each log draws a *style* from its seed:
late braking, hesitation, weaving and harsh acceleration, each a flaw the PDM score punishes
(TTC / near collisions, progress, lane keeping / drivable area, comfort) so a learned policy has
headroom above imitation. `noise` scales every flaw; 0 is a clean driver.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from data_prep.world.agents import PEDESTRIAN, Agent, Static, curve_accel, idm_accel
from data_prep.world.paths import Path
from navsim_adapter.geometry import wrap_angle

# Chrysler Pacifica (nuPlan's ego) dimensions; the ego pose is its rear axle.
WHEEL_BASE = 3.089
EGO_LENGTH, EGO_WIDTH, EGO_HEIGHT = 5.176, 2.297, 1.777
REAR_AXLE_TO_CENTER = 1.461
REAR_AXLE_TO_FRONT = REAR_AXLE_TO_CENTER + EGO_LENGTH / 2


@dataclass
class DriverStyle:
    """Per-log flaws in [0, 1] (already scaled by the noise level)."""

    late_brake: float = 0.0
    hesitation: float = 0.0
    weave: float = 0.0
    harsh: float = 0.0
    noise: float = 0.0
    speed_factor: float = 1.0

    def as_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def sample_style(rng: np.random.Generator, noise: float) -> DriverStyle:
    """Each flaw is present with probability 0.3 * noise (at most 0.9), strength scaled by `noise`."""
    if noise <= 0:
        return DriverStyle()
    p = min(0.9, 0.3 * noise)

    def flaw() -> float:
        return float(min(1.0, noise * rng.uniform(0.5, 1.0))) if rng.random() < p else 0.0

    return DriverStyle(
        late_brake=flaw(),
        hesitation=flaw(),
        weave=flaw(),
        harsh=flaw(),
        noise=float(noise),
        speed_factor=float(np.clip(rng.normal(1.0, 0.07 * noise), 0.8, 1.15)),
    )


@dataclass
class RoutePlan:
    """The lane paths the ego may drive (index 0 = start lane), their stop lines and command spans."""

    paths: list[Path]
    stops: list[tuple[float, str]] = field(default_factory=list)  # (arc length of stop line, connector id)
    turn: str = "straight"  # command while approaching/inside the junction
    turn_span: tuple[float, float] | None = None  # arc-length range of the turn connector
    speed_limit: float = 13.0
    # per path: how far (left, right) the driver may drift from the lane centre; small towards
    # the road edge so a weaving driver leaves its lane but never the road
    drift_room: list[tuple[float, float]] | None = None

    def room(self, index: int) -> tuple[float, float]:
        return self.drift_room[index] if self.drift_room else (0.9, 0.9)


@dataclass
class EgoState:
    x: float
    y: float
    heading: float
    v: float
    a: float = 0.0
    steer: float = 0.0
    yaw_rate: float = 0.0

    def pose(self) -> np.ndarray:
        return np.array([self.x, self.y, self.heading])


def _is_parked(agent: Agent) -> bool:
    """Static objects and parked vehicles: worth a lane change (a car stopped in traffic is not)."""
    return isinstance(agent, Static)


class EgoDriver:
    """Drives the ego along a `RoutePlan` one 0.1 s step at a time."""

    def __init__(self, plan: RoutePlan, state: EgoState, style: DriverStyle, rng: np.random.Generator):
        self.plan, self.state, self.style, self.rng = plan, state, style, rng
        self.path_index = 0
        self.s = float(plan.paths[0].project(state.pose()[None, :2])[0][0])
        self.weave_period = rng.uniform(5.0, 10.0)
        self.weave_phase = rng.uniform(0, 2 * np.pi)
        self.hesitate_until = -1.0
        self.hesitate_factor = 1.0
        self.start_delay = 0.0
        self.steer_noise = 0.0
        self.speed_noise = 0.0
        self.changed_lane_at = -np.inf
        self.command = "straight"

    @property
    def path(self) -> Path:
        return self.plan.paths[self.path_index]

    # ---------------------------------------------------------------- perception
    def _obstacles(self, path: Path, s_ego: float, agents: list[Agent], t: float, lookahead: float = 80.0):
        """(gap, speed, is_static) of objects whose box reaches into the ego's corridor on `path`."""
        found = []
        if not agents:
            return found
        poses = np.array([a.pose()[:2] for a in agents])
        # only objects that can be in the corridor ahead (cheap distance test first)
        near = np.flatnonzero(np.linalg.norm(poses - path.at(s_ego)[:2], axis=1) < lookahead + 15.0)
        if not len(near):
            return found
        agents, poses = [agents[i] for i in near], poses[near]
        vels = np.array([a.velocity() for a in agents])
        for horizon in (0.0, 2.0):  # pedestrians: also where they will be in 2 s
            if horizon and not any(a.name == PEDESTRIAN for a in agents):
                break
            pts = poses + horizon * vels
            s_obj, lat = path.project(pts, s_ego - 5.0, s_ego + lookahead)
            for k, agent in enumerate(agents):
                if horizon and agent.name != PEDESTRIAN:
                    continue
                half = (
                    max(agent.size[0], agent.size[1]) / 2 if agent.name == PEDESTRIAN else agent.size[1] / 2
                )
                margin = 0.8 if agent.name == PEDESTRIAN else 0.25
                if abs(lat[k]) < EGO_WIDTH / 2 + half + margin:
                    gap = s_obj[k] - s_ego - REAR_AXLE_TO_FRONT - agent.size[0] / 2
                    if gap > -1.0:
                        found.append((gap, float(np.hypot(*agent.velocity())), _is_parked(agent)))
        return found

    def _leader(self, agents: list[Agent], t: float, is_red) -> tuple[float, float, bool]:
        obstacles = self._obstacles(self.path, self.s, agents, t)
        for s_stop, connector in self.plan.stops:
            to_line = s_stop - self.s - REAR_AXLE_TO_FRONT
            if to_line > -0.5 and is_red(connector, t) and to_line > self.state.v**2 / (2 * 5.0) - 3.0:
                obstacles.append((max(to_line - 1.0, 0.0) + 0.5, 0.0, True))  # stop ~1.5 m short
        if not obstacles:
            return np.inf, 0.0, False
        return min(obstacles)

    def _maybe_change_lane(self, gap: float, static: bool, agents: list[Agent], t: float) -> None:
        if len(self.plan.paths) < 2 or not static or gap > 40.0 or t - self.changed_lane_at < 8.0:
            return
        for k, path in enumerate(self.plan.paths):
            if k == self.path_index:
                continue
            s_new = float(path.project(self.state.pose()[None, :2])[0][0])
            blocking = [o for o in self._obstacles(path, s_new - 20.0, agents, t, 90.0) if o[0] < 75.0]
            if not blocking:
                self.path_index, self.s, self.changed_lane_at = k, s_new, t
                return

    # ---------------------------------------------------------------- control
    def step(self, t: float, dt: float, agents: list[Agent], is_red) -> None:
        st, style, rng = self.state, self.style, self.rng
        self.s = float(self.path.project(st.pose()[None, :2], self.s - 5.0, self.s + 10.0)[0][0])
        gap, v_lead, static = self._leader(agents, t, is_red)
        self._maybe_change_lane(gap, static, agents, t)
        if len(self.plan.paths) > 1:
            gap, v_lead, static = self._leader(agents, t, is_red)

        # longitudinal: IDM towards the leader, desired speed capped by upcoming curvature
        v0 = self.plan.speed_limit * style.speed_factor
        if t < self.hesitate_until:
            v0 *= self.hesitate_factor
        elif style.hesitation and rng.random() < 0.04 * style.hesitation * dt:
            self.hesitate_until = t + rng.uniform(2.0, 5.0)
            self.hesitate_factor = rng.uniform(0.25, 0.6)
        notice = max(6.0, st.v * (6.0 - 4.0 * style.late_brake))  # late brakers see obstacles late
        if gap > notice and v_lead < 0.5:
            gap = np.inf
        a_max = 1.4 + 1.8 * style.harsh
        b = 2.5 + 2.0 * style.harsh + 1.5 * style.late_brake
        T = 1.5 - 0.7 * style.late_brake
        s0 = 3.0 - 1.8 * style.late_brake
        acc = idm_accel(st.v, v0, gap, st.v - v_lead, a_max, b, T, s0)
        acc = min(acc, curve_accel(self.path, self.s, st.v, a_lat=2.0 + 1.0 * style.harsh))
        self.speed_noise += -0.5 * self.speed_noise * dt + 0.4 * style.noise * np.sqrt(dt) * rng.normal()
        acc += self.speed_noise * (0.5 + style.harsh)
        if st.v < 0.2 and acc > 0.3 and style.hesitation:  # slow to pull away after a stop
            self.start_delay += dt
            if self.start_delay < 2.5 * style.hesitation:
                acc = 0.0
        else:
            self.start_delay = 0.0
        jerk_max = 3.0 + 12.0 * style.harsh + 8.0 * style.late_brake
        acc = float(np.clip(acc, st.a - jerk_max * dt, st.a + jerk_max * dt))
        acc = float(np.clip(acc, -7.0, a_max))
        if st.v <= 0.0 and acc < 0.0:
            acc = 0.0

        # lateral: path curvature feed-forward + feedback on lateral / heading error (a rear-axle
        # tracking law with ~1.2 rad/s bandwidth), steering towards a weaving offset
        ref = self.path.at(self.s)
        _, lateral = self.path.project(st.pose()[None, :2], self.s - 2.0, self.s + 2.0)
        kappa_ref = float(self.path.curvature(self.s + 0.5 * st.v))
        turning = float(np.abs(self.path.curvature(self.s + np.array([0.0, 10.0]))).max()) > 0.02
        weave = (
            style.weave
            * (0.25 if turning else 0.9)
            * np.sin(2 * np.pi * t / self.weave_period + self.weave_phase)
        )
        left_room, right_room = self.plan.room(self.path_index)
        weave = float(np.clip(weave, -right_room, left_room))
        v_ctl = max(st.v, 2.0)
        omega, zeta = 1.2, 0.9
        err = float(lateral[0]) - weave
        heading_err = float(wrap_angle(st.heading - ref[2]))
        correction = (omega / v_ctl) ** 2 * err + 2 * zeta * omega / v_ctl * heading_err
        correction = float(np.clip(correction, -4.5 / v_ctl**2, 4.5 / v_ctl**2))
        steer = float(np.arctan(WHEEL_BASE * (kappa_ref - correction)))
        self.steer_noise += -1.0 * self.steer_noise * dt + 0.006 * style.noise * np.sqrt(dt) * rng.normal()
        steer += self.steer_noise
        steer = float(np.clip(steer, st.steer - 0.8 * dt, st.steer + 0.8 * dt))
        steer = float(np.clip(steer, -0.6, 0.6))

        # kinematic bicycle about the rear axle
        v_new = max(0.0, st.v + acc * dt)
        v_mid = 0.5 * (st.v + v_new)
        yaw_rate = v_mid * np.tan(steer) / WHEEL_BASE
        heading_mid = st.heading + 0.5 * yaw_rate * dt
        st.x += v_mid * np.cos(heading_mid) * dt
        st.y += v_mid * np.sin(heading_mid) * dt
        st.heading = float(wrap_angle(st.heading + yaw_rate * dt))
        st.a, st.v, st.steer, st.yaw_rate = (v_new - st.v) / dt, v_new, steer, float(yaw_rate)

        span = self.plan.turn_span
        self.command = "straight"
        if span is not None and span[0] - 60.0 < self.s < span[1]:
            self.command = self.plan.turn
