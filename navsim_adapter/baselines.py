"""Non-learned planners the evaluator reports next to the policy."""

from __future__ import annotations

import numpy as np

from navsim_adapter.scene import Scene


def constant_velocity_poses(ego_velocity, num_poses: int = 8, dt: float = 0.5) -> np.ndarray:
    """NAVSIM's ConstantVelocityAgent: straight ahead at the current speed, from the ego-frame velocity
    (vx, vy) rounded to float32 as its AgentInput holds it. (num_poses, 3) local poses, float64."""
    velocity = np.asarray(ego_velocity, dtype=np.float32)
    speed = (velocity**2).sum(-1) ** 0.5
    poses = np.zeros((num_poses, 3), np.float32)
    poses[:, 0] = [(i + 1) * dt * speed for i in range(num_poses)]
    return poses.astype(np.float64)


def constant_velocity(scene: Scene, num_poses: int = 8, dt: float = 0.5) -> np.ndarray:
    """The constant-velocity plan of a scene's current frame (see `constant_velocity_poses`)."""
    return constant_velocity_poses(scene.current_frame.ego_status.ego_velocity, num_poses, dt)
