"""The 10 Hz simulation loop; every 5th step (2 Hz, OpenScene's rate) is logged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.world.agents import step_agents
from data_prep.world.driver import EGO_LENGTH, REAR_AXLE_TO_CENTER, EgoDriver
from data_prep.world.scenarios import Scenario

SIM_DT = 0.1
LOG_EVERY = 5  # 10 Hz -> 2 Hz
COMMANDS = ("left", "straight", "right", "unknown")  # NAVSIM driving_command one-hot order


@dataclass
class LoggedFrame:
    t: float
    ego: np.ndarray  # x, y, heading (rear axle), v, a_lon, a_lat
    tracks: list[str]
    names: list[str]
    boxes: np.ndarray  # (N, 7) x, y, z, length, width, height, heading (local world frame)
    velocities: np.ndarray  # (N, 2) world frame
    lights: list[tuple[str, bool]]
    command: str


def _snapshot(t: float, sc: Scenario, driver: EgoDriver) -> LoggedFrame:
    st = driver.state
    boxes, vels = [], []
    for agent in sc.agents:
        x, y, h = agent.pose()
        length, width, height = agent.size
        boxes.append([x, y, height / 2, length, width, height, h])
        vels.append(agent.velocity())
    return LoggedFrame(
        t=t,
        ego=np.array([st.x, st.y, st.heading, st.v, st.a, st.v * st.yaw_rate]),
        tracks=[a.track for a in sc.agents],
        names=[a.name for a in sc.agents],
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 7),
        velocities=np.asarray(vels, dtype=np.float64).reshape(-1, 2),
        lights=sc.net.traffic_light_states(t),
        command=driver.command,
    )


def simulate(sc: Scenario, driver: EgoDriver, num_frames: int) -> list[LoggedFrame]:
    """Run `num_frames` logged frames (num_frames * 5 simulation steps) and return them."""
    frames: list[LoggedFrame] = []
    for step in range(num_frames * LOG_EVERY):
        t = step * SIM_DT
        if step % LOG_EVERY == 0:
            frames.append(_snapshot(t, sc, driver))
        st = driver.state
        centre = np.array([st.x, st.y]) + REAR_AXLE_TO_CENTER * np.array(
            [np.cos(st.heading), np.sin(st.heading)]
        )
        step_agents(sc.agents, (centre, EGO_LENGTH, st.v), t, SIM_DT, sc.net.is_red)
        driver.step(t, SIM_DT, sc.agents, sc.net.is_red)
    return frames
