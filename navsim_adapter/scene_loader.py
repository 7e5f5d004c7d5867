"""Read OpenScene log pickles into `Scene`s, with NAVSIM's scene filter semantics.

`<root>/navsim_logs/<split>/<log>.pkl` is a pickled list of frame dicts (one per 2 Hz frame, whole
log). Scenes are windows of `num_history_frames + num_future_frames` frames starting every
`frame_interval` frames; a scene's token is its current frame's token. Indexing reads every pickle
once and validates every frame, so a bad log fails at construction with the file, frame and key;
parsed logs are then kept in an LRU cache and images are only read when `.image` is accessed.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from navsim_adapter.geometry import quaternion_to_yaw
from navsim_adapter.paths import navsim_log_dir, openscene_data_root, sensor_blobs_dir
from navsim_adapter.scene import (
    CAMERA_NAMES,
    AgentInput,
    Annotations,
    Camera,
    Cameras,
    EgoStatus,
    Frame,
    Scene,
    SceneMetadata,
)


class SceneLoadError(ValueError):
    """A log or split cannot be turned into scenes."""


class MalformedLogError(SceneLoadError):
    """A log pickle is unreadable, or one of its frames lacks a key or has a value of the wrong shape."""


class EmptySplitError(SceneLoadError):
    """The split and filter select no scene (peer tools would silently produce empty caches)."""


@dataclass(frozen=True)
class SceneFilter:
    """Which scenes of a split to use; NAVSIM's `SceneFilter` fields and defaults."""

    num_history_frames: int = 4
    num_future_frames: int = 10
    frame_interval: int | None = None  # None -> num_frames (non-overlapping scenes)
    has_route: bool = True
    max_scenes: int | None = None
    log_names: list[str] | None = None
    tokens: list[str] | None = None

    def __post_init__(self) -> None:
        if self.num_history_frames < 1 or self.num_future_frames < 0:
            raise ValueError(
                f"SceneFilter needs num_history_frames >= 1 and num_future_frames >= 0, got "
                f"{self.num_history_frames}, {self.num_future_frames}"
            )
        if self.frame_interval is not None and self.frame_interval < 1:
            raise ValueError(f"SceneFilter.frame_interval must be >= 1 or None, got {self.frame_interval}")
        if self.max_scenes is not None and self.max_scenes < 1:
            raise ValueError(f"SceneFilter.max_scenes must be >= 1 or None, got {self.max_scenes}")

    @property
    def num_frames(self) -> int:
        return self.num_history_frames + self.num_future_frames

    @property
    def interval(self) -> int:
        return self.num_frames if self.frame_interval is None else self.frame_interval


# ---------------------------------------------------------------------------------------------
# Frame dict -> Frame


class _FrameReader:
    """Typed access to one frame dict whose errors name the file, frame index and key."""

    def __init__(self, raw: Any, source: Path, index: int) -> None:
        self.source, self.index = source, index
        if not isinstance(raw, dict):
            self.fail(None, f"is a {type(raw).__name__}, expected a dict")
        self.raw = raw

    def fail(self, key: str | None, problem: str) -> None:
        token = self.raw.get("token") if isinstance(getattr(self, "raw", None), dict) else None
        where = f"{self.source}: frame {self.index}" + (f" (token {token})" if token else "")
        raise MalformedLogError(f"{where}: " + (f"key '{key}' {problem}" if key else problem))

    def get(self, key: str, container: dict | None = None, prefix: str = "") -> Any:
        container = self.raw if container is None else container
        if key not in container:
            self.fail(prefix + key, "is missing")
        return container[key]

    def array(
        self,
        key: str,
        shape: tuple[int | None, ...],
        container: dict | None = None,
        prefix: str = "",
        finite: bool = True,
    ) -> np.ndarray:
        """Float array whose shape matches `shape` (None = any length); empty (N=0) arrays are reshaped."""
        value = self.get(key, container, prefix)
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            self.fail(prefix + key, f"is not numeric (got {type(value).__name__})")
        if arr.size == 0 and len(shape) > 1 and shape[0] in (None, 0):  # pickles store "no agents" as []
            arr = arr.reshape((0, *shape[1:]))
        if arr.ndim != len(shape) or any(
            e is not None and e != a for e, a in zip(shape, arr.shape, strict=True)
        ):
            expected = (
                "("
                + ", ".join("N" if e is None else str(e) for e in shape)
                + ("," if len(shape) == 1 else "")
                + ")"
            )
            self.fail(prefix + key, f"has shape {arr.shape}, expected {expected}")
        if finite and not np.isfinite(arr).all():
            self.fail(prefix + key, "contains NaN or inf")
        return arr

    def strings(self, key: str, container: dict | None = None, prefix: str = "") -> list[str]:
        value = self.get(key, container, prefix)
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            self.fail(prefix + key, f"is a {type(value).__name__}, expected a list")
        return [str(v) for v in value]


def _read_cameras(r: _FrameReader, sensor_root: Path) -> Cameras:
    cams = r.get("cams")
    if not isinstance(cams, dict):
        r.fail("cams", f"is a {type(cams).__name__}, expected a dict of CAM_xx entries")
    out = {}
    for log_key, entry in cams.items():
        name = str(log_key).lower()
        if name not in CAMERA_NAMES:
            continue  # extra sensors are not part of NAVSIM's camera set
        prefix = f"cams.{log_key}."
        if not isinstance(entry, dict):
            r.fail(f"cams.{log_key}", f"is a {type(entry).__name__}, expected a dict")
        distortion = entry.get("distortion")
        out[name] = Camera(
            camera_path=sensor_root / str(r.get("data_path", entry, prefix)),
            # calibration is only shape-checked: it never enters poses or scores
            intrinsics=r.array("cam_intrinsic", (3, 3), entry, prefix, finite=False),
            sensor2lidar_rotation=r.array("sensor2lidar_rotation", (3, 3), entry, prefix, finite=False),
            sensor2lidar_translation=r.array("sensor2lidar_translation", (3,), entry, prefix, finite=False),
            distortion=None if distortion is None else np.asarray(distortion, dtype=np.float64),
        )
    return Cameras(**out)


def _read_annotations(r: _FrameReader) -> Annotations:
    anns = r.get("anns")
    if not isinstance(anns, dict):
        r.fail("anns", f"is a {type(anns).__name__}, expected a dict")
    boxes = r.array("gt_boxes", (None, 7), anns, "anns.")
    n = len(boxes)
    fields = {
        "names": r.strings("gt_names", anns, "anns."),
        "velocity_3d": r.array("gt_velocity_3d", (n, 3), anns, "anns."),
        "instance_tokens": r.strings("instance_tokens", anns, "anns."),
        "track_tokens": r.strings("track_tokens", anns, "anns."),
    }
    for key, log_key in (
        ("names", "gt_names"),
        ("instance_tokens", "instance_tokens"),
        ("track_tokens", "track_tokens"),
    ):
        if len(fields[key]) != n:
            r.fail(f"anns.{log_key}", f"has {len(fields[key])} entries, expected {n} (one per gt_boxes row)")
    return Annotations(boxes=boxes, **fields)


def _read_traffic_lights(r: _FrameReader) -> list[tuple[str, bool]]:
    lights = r.get("traffic_lights")
    out = []
    for i, light in enumerate(lights):
        if not hasattr(light, "__len__") or len(light) != 2:
            r.fail("traffic_lights", f"entry {i} is {light!r}, expected (lane_connector_id, is_red)")
        out.append((str(light[0]), bool(light[1])))
    return out


def frame_from_dict(raw: dict, sensor_root: Path, source: Path, index: int) -> Frame:
    """Convert one OpenScene frame dict (keys: docs/synthetic_world.md, "Frame dicts") into a `Frame`.

    Raises `MalformedLogError` naming `source`, `index` and the offending key.
    """
    r = _FrameReader(raw, source, index)
    translation = r.array("ego2global_translation", (3,))
    rotation = r.array("ego2global_rotation", (4,))
    if np.linalg.norm(rotation) < 1e-6:
        r.fail("ego2global_rotation", "is a zero quaternion, expected (w, x, y, z) of unit norm")
    dynamic = r.array("ego_dynamic_state", (4,))
    command = r.array("driving_command", (4,))
    ego = EgoStatus(
        ego_pose=np.array([translation[0], translation[1], float(quaternion_to_yaw(rotation))]),
        ego_velocity=dynamic[:2],
        ego_acceleration=dynamic[2:],
        driving_command=command.astype(np.int64),
        in_global_frame=True,
    )
    try:
        timestamp = int(r.get("timestamp"))
    except (TypeError, ValueError):
        r.fail("timestamp", f"is {raw['timestamp']!r}, expected an integer (microseconds)")
    lidar_path = raw.get("lidar_path")
    return Frame(
        token=str(r.get("token")),
        timestamp=timestamp,
        roadblock_ids=r.strings("roadblock_ids"),
        traffic_lights=_read_traffic_lights(r),
        annotations=_read_annotations(r),
        ego_status=ego,
        cameras=_read_cameras(r, sensor_root),
        lidar_path=None if lidar_path is None else sensor_root / str(lidar_path),
        map_name=str(r.get("map_location")),
        log_name=str(raw.get("log_name", source.stem)),
    )


def read_log(path: Path, sensor_root: Path) -> list[Frame]:
    """Every frame of one log pickle, validated."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = pickle.load(fh)
    except (EOFError, pickle.UnpicklingError, AttributeError, ImportError, IndexError, ValueError) as err:
        raise MalformedLogError(
            f"{path}: truncated or not a pickle of frame dicts ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(raw, list):
        raise MalformedLogError(f"{path}: holds a {type(raw).__name__}, expected a list of frame dicts")
    return [frame_from_dict(frame, sensor_root, path, i) for i, frame in enumerate(raw)]


# ---------------------------------------------------------------------------------------------
# Split -> scenes


class SceneLoader:
    """Index a split's scenes once; build `Scene`s on demand.

    `data_root` defaults to `$OPENSCENE_DATA_ROOT`; `sensor_root` to `<root>/sensor_blobs/<split>`.
    `cache_size` is how many parsed logs are kept in memory. Logs are read in sorted name order
    (NAVSIM uses directory order), so `max_scenes` picks the same scenes on every machine.
    """

    def __init__(
        self,
        split: str,
        data_root: str | Path | None = None,
        scene_filter: SceneFilter | None = None,
        sensor_root: str | Path | None = None,
        cache_size: int = 32,
    ) -> None:
        self.split = split
        self.data_root = openscene_data_root(data_root)
        self.log_dir = navsim_log_dir(self.data_root, split)
        self.sensor_root = (
            Path(sensor_root) if sensor_root is not None else sensor_blobs_dir(self.data_root, split)
        )
        self.scene_filter = scene_filter if scene_filter is not None else SceneFilter()
        self.cache_size = cache_size
        self._log_frames = lru_cache(maxsize=cache_size)(self._read_log)
        self._index: dict[str, tuple[str, int]] = {}
        self._build_index()

    def _read_log(self, log_name: str) -> list[Frame]:
        return read_log(self.log_dir / f"{log_name}.pkl", self.sensor_root)

    def __getstate__(self) -> dict:
        # Worker processes get the index, not the parsed logs: they re-read what they need.
        state = self.__dict__.copy()
        del state["_log_frames"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._log_frames = lru_cache(maxsize=self.cache_size)(self._read_log)

    def _build_index(self) -> None:
        f = self.scene_filter
        stats: Counter[str] = Counter()
        if not self.log_dir.is_dir():
            self._empty(stats, f"log directory {self.log_dir} does not exist")
        logs = sorted(p.stem for p in self.log_dir.glob("*.pkl"))
        stats["log pickles found"] = len(logs)
        if f.log_names is not None:
            wanted = set(f.log_names)
            logs = [name for name in logs if name in wanted]
            stats["logs kept by log_names"] = len(logs)
        wanted_tokens = None if f.tokens is None else set(f.tokens)
        owner: dict[str, str] = {}
        for log_name in tqdm(logs, desc=f"indexing {self.split}", unit="log", disable=None):
            frames = self._log_frames(log_name)
            stats["frames in longest log"] = max(stats["frames in longest log"], len(frames))
            for start in range(0, len(frames) - f.num_frames + 1, f.interval):
                stats["windows"] += 1
                current = frames[start + f.num_history_frames - 1]
                if f.has_route and not current.roadblock_ids:
                    stats["dropped by has_route"] += 1
                    continue
                if wanted_tokens is not None and current.token not in wanted_tokens:
                    stats["dropped by tokens"] += 1
                    continue
                if current.token in owner:
                    raise SceneLoadError(
                        f"scene token {current.token} occurs in both {owner[current.token]}.pkl and {log_name}.pkl under {self.log_dir}"
                    )
                owner[current.token] = log_name
                self._index[current.token] = (log_name, start)
                if f.max_scenes is not None and len(self._index) >= f.max_scenes:
                    return
        if not self._index:
            if logs and not stats["windows"]:
                self._empty(stats, f"every log is shorter than the {f.num_frames} frames a scene needs")
            self._empty(stats, "no scene passed the filter")

    def _empty(self, stats: Counter, reason: str) -> None:
        counts = ", ".join(f"{k}: {v}" for k, v in stats.items()) or "nothing read"
        raise EmptySplitError(
            f"split '{self.split}' has zero scenes: {reason}. Logs: {self.log_dir}/*.pkl, sensors: {self.sensor_root}; "
            f"filter: {self.scene_filter}; counts: {counts}"
        )

    @property
    def tokens(self) -> list[str]:
        return list(self._index)

    @property
    def log_names(self) -> list[str]:
        return list(dict.fromkeys(log for log, _ in self._index.values()))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def get_scene(self, token: str) -> Scene:
        try:
            log_name, start = self._index[token]
        except KeyError:
            raise KeyError(
                f"token {token!r} is not a scene of split '{self.split}' under this filter ({len(self)} scenes)"
            ) from None
        f = self.scene_filter
        frames = self._log_frames(log_name)[start : start + f.num_frames]
        current = frames[f.num_history_frames - 1]
        metadata = SceneMetadata(
            log_name=current.log_name,
            scene_token=token,
            map_name=current.map_name,
            initial_token=token,  # NAVSIM sets it to the current frame's token too
            num_history_frames=f.num_history_frames,
            num_future_frames=f.num_future_frames,
        )
        # Fresh camera objects: loaded images belong to this scene, not to the shared log cache.
        frames = [replace(frame, cameras=frame.cameras.select(CAMERA_NAMES)) for frame in frames]
        return Scene(metadata=metadata, frames=frames, data_root=self.data_root)

    def get_agent_input(self, token: str, cameras: tuple[str, ...] = ("cam_f0",)) -> AgentInput:
        return self.get_scene(token).get_agent_input(cameras=cameras)

    def iter_scenes(self, progress: bool = False) -> Iterator[Scene]:
        """Scenes in index order (grouped by log, so the log cache is hit)."""
        for token in tqdm(self._index, desc=f"scenes {self.split}", unit="scene", disable=not progress):
            yield self.get_scene(token)
