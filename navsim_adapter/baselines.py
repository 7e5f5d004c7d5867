"""Non-learned planners the evaluator reports next to the policy."""

from __future__ import annotations

import numpy as np

from navsim_adapter.scene import Scene


def constant_velocity(scene: Scene, num_poses: int = 8, dt: float = 0.5) -> np.ndarray:
    """NAVSIM's ConstantVelocityAgent: straight ahead at the current speed (float32, as its AgentInput holds)."""
    velocity = np.asarray(scene.current_frame.ego_status.ego_velocity, dtype=np.float32)
    speed = (velocity**2).sum(-1) ** 0.5
    poses = np.zeros((num_poses, 3), np.float32)
    poses[:, 0] = [(i + 1) * dt * speed for i in range(num_poses)]
    return poses.astype(np.float64)
