"""Writers of small OpenScene-format splits whose ground truth is known.

Ego drives a circle arc in global (UTM-like, far from the origin) coordinates at constant speed, so
the pose of frame j seen from frame k is known in closed form: for a counter-clockwise arc of
radius R and swept angle d, local = (R sin d, R (1 - cos d), d).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

CAMS = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")


@dataclass
class ArcLog:
    """Ground truth of one written log."""

    log_name: str
    path: Path
    frames: list[dict]
    center: np.ndarray
    radius: float
    angles: np.ndarray  # polar angle of ego around `center` per frame

    def local_pose(self, j: int, k: int) -> np.ndarray:
        """Closed-form pose of frame j in the rear-axle frame of frame k."""
        d = self.angles[j] - self.angles[k]
        return np.array([self.radius * np.sin(d), self.radius * (1.0 - np.cos(d)), d])


def make_frame(
    log_name: str,
    index: int,
    xy: np.ndarray,
    yaw: float,
    *,
    pitch: float = 0.0,
    roll: float = 0.0,
    speed: float = 5.0,
    roadblock_ids: list[str] | None = None,
    num_agents: int = 2,
    with_images: bool = False,
) -> dict:
    """One frame dict with every key NAVSIM reads (docs/synthetic_world.md, "Frame dicts")."""
    token = f"{log_name[-6:]}{index:010d}"
    # extrinsic z-y-x: the heading NAVSIM reads back (pyquaternion's yaw) is exactly `yaw`
    quat = Rotation.from_euler("zyx", [yaw, pitch, roll]).as_quat(scalar_first=True)
    boxes = np.array(
        [[10.0 + 3 * a, -2.0 + a, 0.5, 4.5, 1.9, 1.6, 0.1 * a] for a in range(num_agents)]
    ).reshape(-1, 7)
    cams = {}
    for cam in CAMS:
        cams[cam] = {
            "data_path": f"{log_name}/{cam}/{token}.png" if with_images else f"{log_name}/{cam}/{token}.jpg",
            "sensor2lidar_rotation": np.eye(3),
            "sensor2lidar_translation": np.array([1.0, 0.0, 1.5]),
            "cam_intrinsic": np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]),
            "distortion": np.zeros(5),
        }
    return {
        "token": token,
        "timestamp": 1_600_000_000_000_000 + index * 500_000,
        "log_name": log_name,
        "scene_token": f"scene-{log_name}",
        "map_location": "synthetic-town",
        "roadblock_ids": ["rb1", "rb2"] if roadblock_ids is None else roadblock_ids,
        "traffic_lights": [(1001, True), (1002, False)],
        "ego2global_translation": np.array([xy[0], xy[1], 0.0]),
        "ego2global_rotation": quat,
        "ego_dynamic_state": [speed, 0.0, 0.1, 0.2],
        "driving_command": np.array([0, 1, 0, 0]),
        "lidar_path": f"{log_name}/MERGED_PC/{token}.pcd",
        "cams": cams,
        "anns": {
            "gt_boxes": boxes,
            "gt_names": ["vehicle"] * num_agents,
            "gt_velocity_3d": np.zeros((num_agents, 3)),
            "instance_tokens": [f"inst{a}" for a in range(num_agents)],
            "track_tokens": [f"track{a}" for a in range(num_agents)],
        },
    }


def write_arc_log(
    root: Path,
    split: str,
    log_name: str,
    num_frames: int,
    *,
    radius: float = 60.0,
    speed: float = 8.0,
    start_angle: float = 0.3,
    center: tuple[float, float] = (664_000.0, 3_997_000.0),
    no_route: tuple[int, ...] = (),
    with_images: bool = False,
    tilt: bool = True,
) -> ArcLog:
    """Write `<root>/navsim_logs/<split>/<log_name>.pkl` for ego on a CCW arc at constant speed."""
    center_arr = np.asarray(center, dtype=np.float64)
    angles = start_angle + speed / radius * 0.5 * np.arange(num_frames)
    frames = []
    for i, theta in enumerate(angles):
        xy = center_arr + radius * np.array([np.cos(theta), np.sin(theta)])
        frames.append(
            make_frame(
                log_name,
                i,
                xy,
                theta + np.pi / 2,
                pitch=0.03 * np.sin(i) if tilt else 0.0,
                roll=0.02 * np.cos(i) if tilt else 0.0,
                speed=speed,
                roadblock_ids=[] if i in no_route else None,
                with_images=with_images,
            )
        )
        if with_images:
            for cam in CAMS:
                img_path = root / "sensor_blobs" / split / frames[-1]["cams"][cam]["data_path"]
                img_path.parent.mkdir(parents=True, exist_ok=True)
                pixels = np.full((48, 64, 3), (i * 7) % 256, dtype=np.uint8)
                pixels[:, :, 1] = CAMS.index(cam) * 30
                Image.fromarray(pixels).save(img_path)
    path = write_frames(root, split, log_name, frames)
    return ArcLog(log_name, path, frames, center_arr, radius, angles)


def write_frames(root: Path, split: str, log_name: str, frames: list[dict]) -> Path:
    path = root / "navsim_logs" / split / f"{log_name}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(frames, fh)
    return path


@pytest.fixture
def arc_split(tmp_path: Path) -> tuple[Path, list[ArcLog]]:
    """Three logs of 30, 30 and 16 frames in split 'mini'; log_b has no route at frames 3 and 17."""
    logs = [
        write_arc_log(tmp_path, "mini", "2021.05.12.log_a", 30),
        write_arc_log(
            tmp_path, "mini", "2021.05.12.log_b", 30, radius=-45.0, start_angle=2.0, no_route=(3, 17)
        ),
        write_arc_log(tmp_path, "mini", "2021.06.01.log_c", 16, radius=120.0, speed=12.0, with_images=True),
    ]
    return tmp_path, logs


@pytest.fixture
def arc_log_factory(tmp_path: Path):
    def factory(**kwargs) -> ArcLog:
        kwargs.setdefault("num_frames", 20)
        return write_arc_log(tmp_path, kwargs.pop("split", "mini"), kwargs.pop("log_name", "log_x"), **kwargs)

    return factory
