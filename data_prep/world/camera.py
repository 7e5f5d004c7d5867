"""A nuPlan-like pinhole camera rig and the projection every image is rendered with.

Frames: the lidar frame is the ego (rear-axle) frame at ground level, x forward, y left, z up, so
`sensor2lidar` = sensor-to-ego. Camera frames are OpenCV's: x right, y down, z forward.
A point p_cam maps to the lidar frame as p_lidar = R @ p_cam + t, with R = sensor2lidar_rotation,
t = sensor2lidar_translation; pixels are K @ p_cam / z with K = cam_intrinsic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name -> yaw (deg, left positive) of the optical axis in the ego frame; the 8 OpenScene cameras.
RIG_YAW_DEG = {
    "CAM_F0": 0.0,
    "CAM_L0": 55.0,
    "CAM_L1": 110.0,
    "CAM_L2": 150.0,
    "CAM_R0": -55.0,
    "CAM_R1": -110.0,
    "CAM_R2": -150.0,
    "CAM_B0": 180.0,
}
CAMERA_HEIGHT = 1.6
# OpenCV camera axes expressed in the ego frame for a camera looking along ego +x.
_CAM_TO_EGO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name, intrinsics and pose on the vehicle."""

    name: str
    intrinsics: np.ndarray  # (3, 3)
    rotation: np.ndarray  # (3, 3) sensor -> lidar (ego)
    translation: np.ndarray  # (3,) sensor origin in the lidar (ego) frame
    width: int
    height: int

    @property
    def distortion(self) -> np.ndarray:
        return np.zeros(5)


def make_camera(name: str, width: int, height: int, hfov_deg: float = 70.0) -> CameraSpec:
    """A camera of the rig at `width` x `height` pixels with horizontal field of view `hfov_deg`."""
    if name not in RIG_YAW_DEG:
        raise ValueError(f"unknown camera {name!r}; expected one of {sorted(RIG_YAW_DEG)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = (width / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
    k = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    yaw = np.deg2rad(RIG_YAW_DEG[name])
    c, s = np.cos(yaw), np.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    # cameras sit on the roof around a point 1.5 m ahead of the rear axle, 0.3 m out along their axis
    t = np.array([1.5 + 0.3 * c, 0.3 * s, CAMERA_HEIGHT])
    return CameraSpec(name, k, rz @ _CAM_TO_EGO_FORWARD, t, width, height)


def ego_to_camera(points_ego: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Points (N, 3) in the lidar/ego frame -> the camera's OpenCV frame."""
    return (np.asarray(points_ego, dtype=np.float64) - translation) @ rotation


def camera_to_pixels(cam_points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (N, 3) -> pixels (N, 2); needs depth > 0."""
    z = cam_points[:, 2:3]
    return (cam_points[:, :2] / z) @ intrinsics[:2, :2].T + intrinsics[:2, 2]


def project_points(
    points_ego: np.ndarray, intrinsics: np.ndarray, rotation: np.ndarray, translation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and depths (N,) of ego-frame points; the renderer's projection.

    Takes raw arrays so it works equally with a `CameraSpec` or a log's `cams[...]` entry
    (cam_intrinsic, sensor2lidar_rotation, sensor2lidar_translation). Points with depth <= 0 get
    NaN pixels.
    """
    cam = ego_to_camera(points_ego, rotation, translation)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = camera_to_pixels(cam, intrinsics)
    uv[z <= 0] = np.nan
    return uv, z
