"""NAVSIM's scene dataclasses, re-implemented so nothing here needs navsim or nuplan installed.

Conventions (NAVSIM's): frames are 2 Hz; a scene has `num_history_frames` frames up to and including
the current one plus `num_future_frames`; a `Frame`'s ego pose is GLOBAL, its boxes are in that
frame's ego frame; trajectories handed to agents and scorers are local to the current rear axle.
Frames are built from OpenScene frame dicts by `navsim_adapter.scene_loader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from navsim_adapter.geometry import global_to_local

if TYPE_CHECKING:
    from navsim_adapter.maps.base import MapAPI

CAMERA_NAMES = ("cam_f0", "cam_l0", "cam_l1", "cam_l2", "cam_r0", "cam_r1", "cam_r2", "cam_b0")
DRIVING_COMMANDS = ("left", "straight", "right", "unknown")


@dataclass
class Camera:
    """One camera of one frame. The image is read from `camera_path` on first access of `.image`."""

    camera_path: Path | None = None
    intrinsics: np.ndarray | None = None  # (3, 3)
    sensor2lidar_rotation: np.ndarray | None = None  # (3, 3)
    sensor2lidar_translation: np.ndarray | None = None  # (3,)
    distortion: np.ndarray | None = None
    _image: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def unloaded(self) -> Camera:
        """A copy without the cached image, so each scene owns (and frees) the images it loads."""
        return Camera(
            self.camera_path,
            self.intrinsics,
            self.sensor2lidar_rotation,
            self.sensor2lidar_translation,
            self.distortion,
        )

    @property
    def image(self) -> np.ndarray | None:
        """uint8 (H, W, 3) RGB, or None for a camera that is not part of this frame's input."""
        if self._image is None and self.camera_path is not None:
            from PIL import Image

            path = Path(self.camera_path)
            if not path.is_file():
                raise FileNotFoundError(
                    f"camera image {path} does not exist (data_path in the log's cams entry)"
                )
            with Image.open(path) as img:
                self._image = np.asarray(img.convert("RGB"))
        return self._image


@dataclass
class Cameras:
    """The eight OpenScene cameras (log keys `CAM_F0`.. lower-cased)."""

    cam_f0: Camera = field(default_factory=Camera)
    cam_l0: Camera = field(default_factory=Camera)
    cam_l1: Camera = field(default_factory=Camera)
    cam_l2: Camera = field(default_factory=Camera)
    cam_r0: Camera = field(default_factory=Camera)
    cam_r1: Camera = field(default_factory=Camera)
    cam_r2: Camera = field(default_factory=Camera)
    cam_b0: Camera = field(default_factory=Camera)

    def select(self, names: tuple[str, ...] | list[str]) -> Cameras:
        """A copy keeping only `names` (others empty, images not yet loaded), as NAVSIM's SensorConfig does."""
        unknown = set(names) - set(CAMERA_NAMES)
        if unknown:
            raise ValueError(f"unknown camera names {sorted(unknown)}; expected a subset of {CAMERA_NAMES}")
        return Cameras(
            **{
                f.name: getattr(self, f.name).unloaded() if f.name in names else Camera()
                for f in fields(self)
            }
        )


@dataclass
class Annotations:
    """Boxes of other agents/objects, in the ego frame of the frame they belong to."""

    boxes: np.ndarray  # (N, 7) x, y, z, length, width, height, heading
    names: list[str]
    velocity_3d: np.ndarray  # (N, 3)
    instance_tokens: list[str]
    track_tokens: list[str]

    def __post_init__(self) -> None:
        n = len(self.boxes)
        lengths = {len(self.names), len(self.velocity_3d), len(self.instance_tokens), len(self.track_tokens)}
        if lengths != {n}:
            raise ValueError(
                f"annotation fields disagree in length: boxes {n}, names {len(self.names)}, velocity_3d "
                f"{len(self.velocity_3d)}, instance_tokens {len(self.instance_tokens)}, track_tokens {len(self.track_tokens)}"
            )

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class EgoStatus:
    """Ego pose (x, y, heading), velocity and acceleration (ego frame) and one-hot driving command."""

    ego_pose: np.ndarray  # (3,)
    ego_velocity: np.ndarray  # (2,)
    ego_acceleration: np.ndarray  # (2,)
    driving_command: np.ndarray  # (4,) one-hot: left, straight, right, unknown
    in_global_frame: bool = False


@dataclass
class Frame:
    """One 2 Hz OpenScene frame."""

    token: str
    timestamp: int  # microseconds
    roadblock_ids: list[str]
    traffic_lights: list[tuple[str, bool]]  # (lane_connector_id, is_red)
    annotations: Annotations
    ego_status: EgoStatus  # GLOBAL pose
    cameras: Cameras
    lidar_path: Path | None
    map_name: str
    log_name: str


@dataclass
class SceneMetadata:
    """`scene_token` and `initial_token` are both the current frame's token: the key NAVSIM's loaders,
    metric caches and csvs use. (Official navsim copies OpenScene's log-level `scene_token` here;
    our consumers key scenes by the frame token, so that is what `scene_token` holds.)"""

    log_name: str
    scene_token: str
    map_name: str
    initial_token: str
    num_history_frames: int
    num_future_frames: int


@dataclass
class AgentInput:
    """What an agent may see: the history frames' ego status (poses relative to the current frame) and cameras."""

    ego_statuses: list[EgoStatus]
    cameras: list[Cameras]


@dataclass
class Scene:
    """`num_history_frames` + `num_future_frames` frames of one log; token = the current frame's token."""

    metadata: SceneMetadata
    frames: list[Frame]
    data_root: Path | None = None  # where `map_api` looks for the map

    def __post_init__(self) -> None:
        expected = self.metadata.num_history_frames + self.metadata.num_future_frames
        if len(self.frames) != expected:
            raise ValueError(
                f"scene {self.metadata.scene_token}: {len(self.frames)} frames, expected {expected}"
            )

    @property
    def token(self) -> str:
        return self.metadata.scene_token

    @property
    def current_frame(self) -> Frame:
        return self.frames[self.metadata.num_history_frames - 1]

    @cached_property
    def map_api(self) -> MapAPI:
        """The scene's map, loaded on first use (maps are large; most consumers never need them)."""
        from navsim_adapter.maps import load_map  # lazy: the maps package is optional for reading scenes

        return load_map(self.metadata.map_name, self.data_root)

    def global_poses(self) -> np.ndarray:
        """(num_frames, 3) global ego poses of all frames."""
        return np.stack([f.ego_status.ego_pose for f in self.frames])

    def get_future_trajectory(self, num_poses: int = 8) -> np.ndarray:
        """(num_poses, 3) human future (x, y, heading) relative to the current rear axle, t = 0.5 s .. num_poses*0.5 s."""
        h, f = self.metadata.num_history_frames, self.metadata.num_future_frames
        if not 0 < num_poses <= f:
            raise ValueError(f"num_poses must be in 1..{f} (the scene's future frames), got {num_poses}")
        poses = self.global_poses()
        return global_to_local(poses[h : h + num_poses], poses[h - 1])

    def get_history_trajectory(self) -> np.ndarray:
        """(num_history_frames, 3) past poses relative to the current rear axle; the last row is (0, 0, 0)."""
        h = self.metadata.num_history_frames
        poses = self.global_poses()
        return global_to_local(poses[:h], poses[h - 1])

    def get_agent_input(
        self, cameras: tuple[str, ...] = ("cam_f0",), history_indices: list[int] | None = None
    ) -> AgentInput:
        """History ego statuses relative to the current frame, with `cameras` kept for `history_indices`
        (default: every history frame; images stay lazy either way)."""
        h = self.metadata.num_history_frames
        indices = range(h) if history_indices is None else history_indices
        bad = [i for i in indices if not -h <= i < h]
        if bad:
            raise IndexError(f"history_indices {bad} out of range for {h} history frames")
        keep = {i % h for i in indices}
        local = self.get_history_trajectory()
        statuses, cams = [], []
        for i, frame in enumerate(self.frames[:h]):
            statuses.append(replace(frame.ego_status, ego_pose=local[i], in_global_frame=False))
            cams.append(frame.cameras.select(cameras) if i in keep else Cameras())
        return AgentInput(ego_statuses=statuses, cameras=cams)
