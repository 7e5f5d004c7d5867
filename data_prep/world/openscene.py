"""Turn a simulated log into OpenScene frame dicts (the on-disk format NAVSIM reads).

Keys NAVSIM's scene loader reads (also listed in docs/synthetic_world.md, "Frame dicts"): token, timestamp (µs), log_name, map_location,
roadblock_ids, traffic_lights, ego2global_translation / ego2global_rotation (w, x, y, z),
ego_dynamic_state [vx, vy, ax, ay] (ego frame), driving_command one-hot (left, straight, right,
unknown), lidar_path, cams{CAM_xx: data_path, sensor2lidar_*, cam_intrinsic, distortion} and
anns{gt_boxes (N, 7) in the ego frame, gt_names, gt_velocity_3d (ego frame), instance_tokens,
track_tokens}. Poses are the rear axle; the lidar frame is the ego frame (lidar2ego = identity).
"""

from __future__ import annotations

import hashlib

import numpy as np

from data_prep.world.camera import CameraSpec
from data_prep.world.simulate import COMMANDS, LoggedFrame
from navsim_adapter.geometry import global_to_local, local_to_global, rotate, wrap_angle, yaw_to_quaternion

FRAME_INTERVAL_US = 500_000
ANNOTATION_RANGE = 100.0


def make_token(*parts: object) -> str:
    """16 hex characters, a pure function of `parts` (so logs are reproducible per seed)."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def camera_entry(cam: CameraSpec, data_path: str) -> dict:
    return {
        "data_path": data_path,
        "sensor2lidar_rotation": cam.rotation.copy(),
        "sensor2lidar_translation": cam.translation.copy(),
        "cam_intrinsic": cam.intrinsics.copy(),
        "distortion": cam.distortion,
    }


def global_ego_poses(frames: list[LoggedFrame], origin: np.ndarray) -> np.ndarray:
    """(F, 3) global rear-axle poses of the logged frames."""
    local = np.array([f.ego[:3] for f in frames])
    return local_to_global(local, origin)


def frame_dicts(
    frames: list[LoggedFrame],
    *,
    log_name: str,
    map_name: str,
    route: list[str],
    origin: np.ndarray,
    cams: list[CameraSpec],
    start_us: int,
    salt: tuple,
) -> list[dict]:
    """One OpenScene dict per logged frame; `salt` makes every token unique to this log."""
    tokens = [make_token(*salt, "frame", k) for k in range(len(frames))]
    log_token, scene_token = make_token(*salt, "log"), make_token(*salt, "scene")
    track_tokens: dict[str, str] = {}
    poses = global_ego_poses(frames, origin)
    out = []
    for k, (f, pose) in enumerate(zip(frames, poses, strict=True)):
        keep = np.flatnonzero(np.hypot(f.boxes[:, 0] - f.ego[0], f.boxes[:, 1] - f.ego[1]) < ANNOTATION_RANGE)
        boxes = f.boxes[keep].copy()
        boxes[:, [0, 1, 6]] = global_to_local(f.boxes[keep][:, [0, 1, 6]], f.ego[:3])
        vel_ego = np.column_stack([rotate(f.velocities[keep], -f.ego[2]), np.zeros(len(keep))])
        tracks = [track_tokens.setdefault(f.tracks[i], make_token(*salt, "track", f.tracks[i])) for i in keep]
        command = np.zeros(4, dtype=np.int64)
        command[COMMANDS.index(f.command)] = 1
        token = tokens[k]
        out.append(
            {
                "token": token,
                "frame_idx": k,
                "timestamp": int(start_us + k * FRAME_INTERVAL_US),
                "log_name": log_name,
                "log_token": log_token,
                "scene_token": scene_token,
                "scene_name": log_name,
                "vehicle_name": "synthetic",
                "map_location": map_name,
                "sample_prev": tokens[k - 1] if k else None,
                "sample_next": tokens[k + 1] if k + 1 < len(tokens) else None,
                "roadblock_ids": list(route),
                "traffic_lights": [(cid, bool(red)) for cid, red in f.lights],
                "ego2global_translation": np.array([pose[0], pose[1], 0.0]),
                "ego2global_rotation": yaw_to_quaternion(wrap_angle(pose[2])),
                "ego_dynamic_state": np.array([f.ego[3], 0.0, f.ego[4], f.ego[5]]),
                "driving_command": command,
                "lidar2ego_translation": np.zeros(3),
                "lidar2ego_rotation": np.array([1.0, 0.0, 0.0, 0.0]),
                "lidar_path": f"{log_name}/MERGED_PC/{token}.pcd",
                "cams": {cam.name: camera_entry(cam, f"{log_name}/{cam.name}/{token}.jpg") for cam in cams},
                "anns": {
                    "gt_boxes": boxes,
                    "gt_names": [f.names[i] for i in keep],
                    "gt_velocity_3d": vel_ego,
                    "instance_tokens": [make_token(*salt, "instance", f.tracks[i], k) for i in keep],
                    "track_tokens": tracks,
                },
            }
        )
    return out
