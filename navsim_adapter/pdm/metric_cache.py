"""Real-data path: ScoringContexts from NAVSIM metric caches.

Layout (NAVSIM v2): `<cache>/<log>/unknown/<token>/metric_cache.pkl` (lzma-compressed pickles of
`navsim.planning.metric_caching.metric_cache.MetricCache`) indexed by
`<cache>/metadata/*.csv` (one `file_name` column). Unpickling needs the official navsim and
nuplan-devkit packages; without them every entry point raises one ImportError naming them.
Caches written by another navsim version (e.g. v1.1, which lacks the human / past trajectories)
are detected from their fields and reported, never mis-scored.
"""

from __future__ import annotations

import csv
import lzma
import pickle
from pathlib import Path

import numpy as np

from navsim_adapter.pdm.context import OBJECT_TYPES, ScoringContext
from navsim_adapter.pdm.official import require_official
from navsim_adapter.pdm.simulation import NUM_STEPS, STATE_DIM, sample_times_us

# Fields of the navsim 2.x MetricCache this engine reads.
REQUIRED_FIELDS = (
    "trajectory",
    "ego_state",
    "observation",
    "centerline",
    "route_lane_ids",
    "drivable_area_map",
    "human_trajectory",
    "past_human_trajectory",
    "scene_type",
    "timepoint",
)
RED_LIGHT_PREFIX = "red_light_"


class MetricCacheVersionError(ValueError):
    """The metric cache was written by an incompatible navsim version."""


def metadata_index(cache_root: str | Path) -> dict[str, Path]:
    """token -> metric_cache.pkl path, from `<cache>/metadata/*.csv` (NAVSIM's MetricCacheLoader rule)."""
    root = Path(cache_root)
    csvs = sorted((root / "metadata").glob("*.csv"))
    if not csvs:
        raise FileNotFoundError(
            f"{root / 'metadata'}: no metadata csv (expected <cache>/metadata/*_metadata_node_*.csv)"
        )
    out: dict[str, Path] = {}
    for path in csvs:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or rows[0] != ["file_name"]:
            raise ValueError(f"{path}: expected a header line 'file_name', got {rows[:1]}")
        for row in rows[1:]:
            if row:
                p = Path(row[0])
                out[p.parts[-2]] = p if p.is_absolute() else root / p
    return out


def load_metric_cache(path: str | Path):
    """Unpickle one metric_cache.pkl (lzma) and check its navsim version."""
    require_official(f"reading the NAVSIM metric cache {path}")
    path = Path(path)
    try:
        with lzma.open(path, "rb") as fh:
            cache = pickle.load(fh)
    except (ModuleNotFoundError, AttributeError) as err:
        raise MetricCacheVersionError(
            f"{path}: written by a navsim version whose classes the installed navsim lacks ({err}); "
            "rebuild the cache with navsim 2.x (run_metric_caching.py)"
        ) from err
    check_version(cache, path)
    return cache


def check_version(cache, path: str | Path = "<memory>") -> None:
    missing = [f for f in REQUIRED_FIELDS if not hasattr(cache, f)]
    if missing:
        raise MetricCacheVersionError(
            f"{path}: metric cache lacks field(s) {missing}: it was written by navsim < 2.0 (v1.x caches have no "
            "human / past trajectories); rebuild it with navsim 2.x run_metric_caching.py"
        )


def _state_array(ego) -> np.ndarray:
    dyn = ego.dynamic_car_state
    return np.array(
        [
            ego.rear_axle.x,
            ego.rear_axle.y,
            ego.rear_axle.heading,
            dyn.rear_axle_velocity_2d.x,
            dyn.rear_axle_velocity_2d.y,
            dyn.rear_axle_acceleration_2d.x,
            dyn.rear_axle_acceleration_2d.y,
            ego.tire_steering_angle,
            dyn.tire_steering_rate,
            dyn.angular_velocity,
            dyn.angular_acceleration,
        ],
        dtype=np.float64,
    )


def _sample(trajectory, times_us: np.ndarray) -> np.ndarray:
    from nuplan.common.actor_state.state_representation import TimePoint

    t = np.clip(times_us, trajectory.start_time.time_us, trajectory.end_time.time_us)
    return np.stack([_state_array(s) for s in trajectory.get_state_at_times([TimePoint(int(x)) for x in t])])


def context_from_metric_cache(cache, token: str = "") -> ScoringContext:
    """ScoringContext holding exactly what NAVSIM's scorer reads from a metric cache."""
    check_version(cache)
    from navsim.common.enums import SceneFrameType

    ego = _state_array(cache.ego_state)
    t0 = int(cache.ego_state.time_us)
    steps = NUM_STEPS + 1
    tracks = cache.observation.detections_tracks[:steps]
    if len(tracks) < steps:
        raise MetricCacheVersionError(
            f"metric cache {token}: {len(tracks)} observation frames, expected >= {steps}"
        )

    tokens: dict[str, int] = {}
    rows = []
    for t, det in enumerate(tracks):
        for obj in det.tracked_objects.tracked_objects:
            j = tokens.setdefault(obj.track_token, len(tokens))
            kind = obj.tracked_object_type.name.lower()
            vel = getattr(obj, "velocity", None)
            rows.append(
                (
                    t,
                    j,
                    obj.center.x,
                    obj.center.y,
                    obj.center.heading,
                    obj.box.length,
                    obj.box.width,
                    vel.x if vel is not None else 0.0,
                    vel.y if vel is not None else 0.0,
                    kind,
                )
            )
    m = len(tokens)
    boxes = np.zeros((steps, m, 5))
    velocity = np.zeros((steps, m, 2))
    valid = np.zeros((steps, m), dtype=bool)
    types = ["generic_object"] * m
    for t, j, x, y, h, length, width, vx, vy, kind in rows:
        boxes[t, j] = (x, y, h, length, width)
        velocity[t, j] = (vx, vy)
        valid[t, j] = True
        types[j] = kind if kind in OBJECT_TYPES else "generic_object"

    dmap = cache.drivable_area_map
    layers = [t.name for t in dmap.map_types]
    red_ids: list[str] = []
    red_polys = []
    per_step = []
    tl = getattr(cache.observation, "_occupancy_maps_tl", None) or []
    for t in range(steps):
        names, polys = tl[t] if t < len(tl) else ([], [])
        here = set()
        for name, poly in zip(names, polys, strict=True):
            lane_id = name[len(RED_LIGHT_PREFIX) :] if name.startswith(RED_LIGHT_PREFIX) else name
            if lane_id not in red_ids:
                red_ids.append(lane_id)
                red_polys.append(poly)
            here.add(lane_id)
        per_step.append(here)
    active = np.array([[i in s for i in red_ids] for s in per_step], dtype=bool).reshape(steps, len(red_ids))

    reference = _sample(cache.trajectory, t0 + sample_times_us(t0))[:, :3]
    past = None
    if cache.past_human_trajectory is not None:
        start, end = (
            cache.past_human_trajectory.start_time.time_us,
            cache.past_human_trajectory.end_time.time_us,
        )
        q = np.arange(start, end, 100_000, dtype=np.int64)[:-1]
        past = _sample(cache.past_human_trajectory, q) if len(q) else np.zeros((0, STATE_DIM))
    human = (
        None if cache.human_trajectory is None else np.asarray(cache.human_trajectory.poses, dtype=np.float64)
    )

    return ScoringContext(
        token=token or str(getattr(cache, "file_path", "") or ""),
        timestamp_us=t0,
        ego_state=ego,
        agent_tokens=list(tokens),
        agent_types=types,
        agent_boxes=boxes,
        agent_velocity=velocity,
        agent_valid=valid,
        map_ids=list(dmap.tokens),
        map_layers=layers,
        map_polygons=list(dmap._geometries),
        route_lane_ids=list(cache.route_lane_ids),
        centerline=np.array([[p.x, p.y, p.heading] for p in cache.centerline.discrete_path]),
        reference_poses=reference,
        red_light_ids=red_ids,
        red_light_polygons=red_polys,
        red_light_active=active,
        human_trajectory=human,
        past_states=past,
        is_synthetic=cache.scene_type == SceneFrameType.SYNTHETIC,
        log_name=str(getattr(cache, "log_name", "")),
    )


class MissingTokenError(LookupError):
    """A scene the metric cache has no entry for."""


class MetricCacheIndex:
    """One metric cache: its metadata csv read once, a ScoringContext per token loaded on demand.

    Cheap to build in each worker process (only the csv is read); the pickles are loaded by `context`.
    """

    def __init__(self, root: str | Path, purpose: str = "reading a NAVSIM metric cache"):
        require_official(f"{purpose} ({root})")
        self.root = Path(root)
        self.paths = metadata_index(self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, token: object) -> bool:
        return token in self.paths

    def missing(self, token: str, log_name: str = "", note: str = "") -> MissingTokenError:
        """The error for a scene without a cache entry (names the cache, the token and the log)."""
        log = f" (log {log_name})" if log_name else ""
        return MissingTokenError(
            f"scene token {token}{log} is not in the metric cache {self.root} (no entry in "
            f"{self.root / 'metadata'}/*.csv): the cache was built for other scenes; rebuild it for this split "
            f"with navsim's run_metric_caching.py{'; ' + note if note else ''}"
        )

    def context(self, token: str, log_name: str = "") -> ScoringContext:
        if token not in self.paths:
            raise self.missing(token, log_name)
        return context_from_metric_cache(load_metric_cache(self.paths[token]), token)


def load_contexts(
    cache_root: str | Path, tokens: list[str] | None = None, progress: bool = True
) -> list[ScoringContext]:
    """ScoringContexts for `tokens` (default: every token in the metadata csv) of a metric cache."""
    from tqdm import tqdm

    index = metadata_index(cache_root)
    wanted = list(index) if tokens is None else tokens
    unknown = [t for t in wanted if t not in index]
    if unknown:
        raise KeyError(f"{cache_root}: token(s) {unknown[:5]} not in the metadata csv")
    return [
        context_from_metric_cache(load_metric_cache(index[t]), t)
        for t in tqdm(wanted, desc="metric caches", disable=not progress)
    ]


def dump_metric_cache(cache, root: str | Path, token: str, log_name: str = "log") -> Path:
    """Write a cache the way NAVSIM lays it out (used for tests and the synthetic world)."""
    path = Path(root) / log_name / "unknown" / token / "metric_cache.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(lzma.compress(pickle.dumps(cache, protocol=pickle.HIGHEST_PROTOCOL), preset=0))
    meta = Path(root) / "metadata" / "metric_cache_metadata_node_0.csv"
    meta.parent.mkdir(parents=True, exist_ok=True)
    new = not meta.exists()
    with open(meta, "a", newline="") as fh:
        if new:
            fh.write("file_name\n")
        fh.write(f"{path}\n")
    return path


def write_split_cache(
    data_root: str | Path, split: str, out: str | Path, frame_interval: int = 1, progress: bool = False
) -> Path:
    """A NAVSIM-format metric cache of a synthetic split's scenes, written with the official classes
    (what run_metric_caching.py produces for real logs), so the real-data path can run on the synthetic world."""
    from tqdm import tqdm

    from navsim_adapter.pdm import build_context
    from navsim_adapter.pdm.official import to_metric_cache
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    loader = SceneLoader(split, data_root=data_root, scene_filter=SceneFilter(frame_interval=frame_interval))
    for scene in tqdm(loader.iter_scenes(), total=len(loader), desc="metric cache", disable=not progress):
        dump_metric_cache(to_metric_cache(build_context(scene)), out, scene.token, scene.metadata.log_name)
    return Path(out)
