"""Vectorised SE(2) helpers for NAVSIM poses (x, y, heading).

OpenScene stores ego orientation as a quaternion (w, x, y, z) in the global frame; NAVSIM works
with 2-D poses whose heading is the quaternion's yaw. Everything here takes and returns numpy
arrays of any leading shape so one call converts a whole log.
"""

from __future__ import annotations

import numpy as np


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Wrap angles to [-pi, pi) so headings compare across the +-pi seam."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2.0 * np.pi) - np.pi


def quaternion_to_yaw(quaternion: np.ndarray) -> np.ndarray:
    """Heading of quaternions given as (..., 4) w, x, y, z: the angle NAVSIM reads.

    NAVSIM takes `pyquaternion.Quaternion(q).yaw_pitch_roll[0]`, i.e. the z angle of the extrinsic
    z-y-x decomposition R = Rx(roll) Ry(pitch) Rz(yaw). It equals the usual intrinsic z-y'-x'' yaw
    for level vehicles and differs by O(roll * pitch) otherwise; we follow NAVSIM so scores agree.
    Non-unit quaternions are fine: both atan2 arguments scale with the squared norm.
    """
    q = np.asarray(quaternion, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternion must have last dimension 4 (w, x, y, z), got shape {q.shape}")
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.arctan2(2.0 * (w * z - x * y), w * w + x * x - y * y - z * z)


def yaw_to_quaternion(yaw: np.ndarray | float) -> np.ndarray:
    """Unit quaternions (..., 4) w, x, y, z for a pure rotation by `yaw` about z."""
    half = 0.5 * np.asarray(yaw, dtype=np.float64)
    zeros = np.zeros_like(half)
    return np.stack([np.cos(half), zeros, zeros, np.sin(half)], axis=-1)


def _rotation(heading: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.cos(heading), np.sin(heading)


def global_to_local(poses: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Express global poses (..., 3) or points (..., 2) in the frame of `origin` (x, y, heading).

    This is NAVSIM's "relative to the current rear axle" transform: the origin pose maps to (0, 0, 0).
    """
    poses = np.asarray(poses, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    _check_pose_array(poses, "poses")
    c, s = _rotation(origin[2])
    dx = poses[..., 0] - origin[0]
    dy = poses[..., 1] - origin[1]
    out = np.empty_like(poses)
    out[..., 0] = c * dx + s * dy
    out[..., 1] = -s * dx + c * dy
    if poses.shape[-1] == 3:
        out[..., 2] = wrap_angle(poses[..., 2] - origin[2])
    return out


def local_to_global(poses: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Inverse of `global_to_local`: local poses (..., 3) or points (..., 2) back to global."""
    poses = np.asarray(poses, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    _check_pose_array(poses, "poses")
    c, s = _rotation(origin[2])
    out = np.empty_like(poses)
    out[..., 0] = origin[0] + c * poses[..., 0] - s * poses[..., 1]
    out[..., 1] = origin[1] + s * poses[..., 0] + c * poses[..., 1]
    if poses.shape[-1] == 3:
        out[..., 2] = wrap_angle(poses[..., 2] + origin[2])
    return out


def _check_pose_array(poses: np.ndarray, name: str) -> None:
    if poses.ndim == 0 or poses.shape[-1] not in (2, 3):
        raise ValueError(
            f"{name} must have last dimension 2 (x, y) or 3 (x, y, heading), got shape {poses.shape}"
        )
