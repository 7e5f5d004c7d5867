"""NAVSIM v2 two-stage (navhard) splits: write one from a synthetic split, read it, score it as navsim does.

A two-stage split pairs each stage-one scene (an original frame `now` and the frame 0.5 s before it,
`prev`) with synthetic second-stage scenes that start where the first stage's 4 s plan ends: here the
same log 4 s later with the ego displaced sideways by a few offsets. navsim 2.0.0's `run_pdm_score.py`
scores both stages, weights each second-stage scene by a Gaussian kernel of the distance between the
stage-one plan's endpoint and that scene's start (sigma^2 = 0.1 m^2), takes EC between `now` and `prev`
(and between each second-stage pair), and reports per-token rows and three aggregate rows. On disk:

    <out>/synthetic_scene_pickles/<17-char token>.pkl   navsim's Scene.save_to_disk format (plain dicts)
    <out>/config/train_test_split/<name>.yaml          the split: scene filter + reactive_all_mapping

`python -m navsim_adapter.evaluation.two_stage write|score ...`; see `main`.
"""

from __future__ import annotations

import argparse
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from navsim_adapter.pdm.columns import V2_COLUMNS
from navsim_adapter.scene import Annotations, Camera, Cameras, EgoStatus, Frame, Scene, SceneMetadata
from vla_dipole import tables
from vla_dipole.cli_options import add_sampling_args

DELAY_FRAMES = 8  # the second stage starts 4 s later, where the first stage's plan ends
HISTORY, STAGE_ONE_FUTURE, SYNTHETIC_FUTURE = 4, 8, 10
SIGMA_SQUARED = 0.1  # navsim's pseudo-closed-loop Gaussian kernel
OFFSETS = (0.0, 0.5, -1.0)  # lateral ego displacements [m] of the second-stage scenes
SCENES_DIR, CONFIG_DIR = "synthetic_scene_pickles", "config"
# v2 sub-scores (our key -> navsim column) in the order navsim writes them, EC last ("score" apart)
METRICS = {k: v for k, v in V2_COLUMNS.items() if k != "epdms"}
AGGREGATE_ROWS = (
    "extended_pdm_score_stage_one",
    "extended_pdm_score_stage_two",
    "extended_pdm_score_combined",
)


@dataclass
class TwoStageSplit:
    """A written (or navsim's) two-stage split: its YAML and the synthetic scene pickles."""

    name: str
    data_split: str
    mapping: list[tuple[str, str, list[tuple[str, str]]]]  # (now, prev, [(stage-two now, stage-two prev)])
    scenes_path: Path

    @classmethod
    def load(cls, config: Path, scenes_path: Path) -> TwoStageSplit:
        cfg = yaml.safe_load(Path(config).read_text())
        try:
            mapping = [
                (str(a), str(b), [(str(x), str(y)) for x, y in pairs])
                for a, b, pairs in cfg["reactive_all_mapping"]
            ]
            data_split = str(cfg["data_split"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{config}: expected data_split and reactive_all_mapping [[now, prev, [[s2_now, s2_prev], ...]], ...] ({err})"
            ) from err
        return cls(Path(config).stem, data_split, mapping, Path(scenes_path))

    @property
    def stage_one(self) -> list[str]:
        return [t for now, prev, _ in self.mapping for t in (now, prev)]

    @property
    def stage_two(self) -> list[str]:
        return [t for _, _, pairs in self.mapping for pair in pairs for t in pair]


# ---------------------------------------------------------------------------------------------------------------
# navsim's synthetic scene format (Scene.save_to_disk: a pickled dict of plain values)


def scene_to_dict(scene: Scene, sensor_root: Path) -> dict:
    """navsim's `Scene.save_to_disk` dict of our scene (camera paths relative to `sensor_root`)."""
    frames = []
    for f in scene.frames:
        cams = {}
        for name in Cameras.__dataclass_fields__:
            cam = getattr(f.cameras, name)
            cams[name] = (
                {}
                if cam.camera_path is None
                else {
                    "data_path": Path(cam.camera_path).relative_to(sensor_root),
                    "sensor2lidar_rotation": cam.sensor2lidar_rotation,
                    "sensor2lidar_translation": cam.sensor2lidar_translation,
                    "cam_intrinsic": cam.intrinsics,
                    "distortion": cam.distortion,
                }
            )
        a, e = f.annotations, f.ego_status
        frames.append(
            {
                "token": f.token,
                "timestamp": f.timestamp,
                "roadblock_ids": list(f.roadblock_ids),
                "traffic_lights": [(lane, bool(red)) for lane, red in f.traffic_lights],
                "annotations": {
                    "boxes": a.boxes,
                    "names": list(a.names),
                    "velocity_3d": a.velocity_3d,
                    "instance_tokens": list(a.instance_tokens),
                    "track_tokens": list(a.track_tokens),
                },
                "ego_status": {
                    "ego_pose": np.asarray(e.ego_pose, np.float64),
                    "ego_velocity": np.asarray(e.ego_velocity, np.float32),
                    "ego_acceleration": np.asarray(e.ego_acceleration, np.float32),
                    "driving_command": np.asarray(e.driving_command),
                    "in_global_frame": True,
                },
                "lidar_path": None,
                "camera_dict": cams,
            }
        )
    m = scene.metadata
    meta = {
        "log_name": m.log_name,
        "scene_token": m.scene_token,
        "map_name": m.map_name,
        "initial_token": m.initial_token,
        "num_history_frames": m.num_history_frames,
        "num_future_frames": m.num_future_frames,
    }
    return {
        "scene_metadata": meta,
        "frames": frames,
        "extended_traffic_light_data": None,
        "extended_detections_tracks": None,
    }


def read_synthetic_scene(path: Path, sensor_root: Path, data_root: Path | None = None) -> Scene:
    """Our Scene from one navsim synthetic scene pickle (Scene.save_to_disk format)."""
    try:
        with Path(path).open("rb") as fh:
            d = pickle.load(fh)
        meta = d["scene_metadata"]
        frames = []
        for f in d["frames"]:
            cams = {
                name: Camera(
                    sensor_root / entry["data_path"],
                    entry.get("cam_intrinsic"),
                    entry.get("sensor2lidar_rotation"),
                    entry.get("sensor2lidar_translation"),
                    entry.get("distortion"),
                )
                for name, entry in f["camera_dict"].items()
                if entry
            }
            e = f["ego_status"]
            frames.append(
                Frame(
                    token=str(f["token"]),
                    timestamp=int(f["timestamp"]),
                    roadblock_ids=[str(r) for r in f["roadblock_ids"]],
                    traffic_lights=[(str(lane), bool(red)) for lane, red in f["traffic_lights"]],
                    annotations=Annotations(**f["annotations"]),
                    ego_status=EgoStatus(
                        np.asarray(e["ego_pose"], np.float64),
                        np.asarray(e["ego_velocity"], np.float64),
                        np.asarray(e["ego_acceleration"], np.float64),
                        np.asarray(e["driving_command"]).astype(np.int64),
                        True,
                    ),
                    cameras=Cameras(**cams),
                    lidar_path=None,
                    map_name=str(meta["map_name"]),
                    log_name=str(meta["log_name"]),
                )
            )
        metadata = SceneMetadata(
            **{k: meta[k] for k in ("log_name", "scene_token", "map_name", "initial_token")},
            num_history_frames=int(meta["num_history_frames"]),
            num_future_frames=int(meta["num_future_frames"]),
        )
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: not a navsim synthetic scene (Scene.save_to_disk dict with scene_metadata and frames): "
            f"{type(err).__name__}: {err}"
        ) from err
    return Scene(metadata=metadata, frames=frames, data_root=data_root)


def displaced(scene: Scene, offset: float, suffix: str) -> Scene:
    """`scene` with the ego moved `offset` m to its left in every frame (boxes re-expressed), tokens + suffix."""
    frames = []
    for f in scene.frames:
        x, y, yaw = f.ego_status.ego_pose
        pose = np.array([x - offset * math.sin(yaw), y + offset * math.cos(yaw), yaw])
        boxes = np.array(f.annotations.boxes, dtype=np.float64, copy=True)
        boxes[:, 1] -= offset  # same heading: a box's lateral coordinate shifts by the offset
        frames.append(
            replace(
                f,
                token=f.token + suffix,
                ego_status=replace(f.ego_status, ego_pose=pose),
                annotations=replace(f.annotations, boxes=boxes),
            )
        )
    token = scene.token + suffix
    meta = replace(scene.metadata, scene_token=token, initial_token=token)
    return Scene(metadata=meta, frames=frames, data_root=scene.data_root)


def write_two_stage_split(
    data_root: Path,
    split: str,
    out: Path,
    name: str = "synthetic_two_stage",
    offsets: Sequence[float] = OFFSETS,
) -> TwoStageSplit:
    """A navhard_two_stage-format split of `split`: per log, stage one = the frame with the most room
    before the delay (and the one before it), stage two = each offset of the log 4 s later."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    data_root, out = Path(data_root), Path(out)
    sensor_root = data_root / "sensor_blobs" / split
    loader = SceneLoader(
        split,
        data_root=data_root,
        scene_filter=SceneFilter(
            num_history_frames=HISTORY, num_future_frames=SYNTHETIC_FUTURE, frame_interval=1
        ),
    )
    by_log: dict[str, list[str]] = {}
    for token in loader.tokens:
        by_log.setdefault(loader.get_scene(token).metadata.log_name, []).append(token)
    (out / SCENES_DIR).mkdir(parents=True, exist_ok=True)
    mapping, synthetic = [], []
    for tokens in by_log.values():
        if len(tokens) <= DELAY_FRAMES + 1:
            continue
        prev, now = tokens[0], tokens[1]  # stage one; its stage two starts DELAY_FRAMES frames later
        pairs = []
        for k, offset in enumerate(offsets):
            pair = []
            for stage_one in (now, prev):
                later = loader.get_scene(tokens[tokens.index(stage_one) + DELAY_FRAMES])
                scene = displaced(later, offset, str(k))
                with (out / SCENES_DIR / f"{scene.token}.pkl").open("wb") as fh:
                    d = scene_to_dict(scene, sensor_root)
                    d["scene_metadata"].update(
                        corresponding_original_scene=later.token,
                        corresponding_original_initial_token=stage_one,
                    )
                    pickle.dump(d, fh, protocol=pickle.HIGHEST_PROTOCOL)
                pair.append(scene.token)
            pairs.append(tuple(pair))
            synthetic += pair
        mapping.append((now, prev, pairs))
    if not mapping:
        raise ValueError(f"split {split} under {data_root}: no log is long enough for a second stage")
    config = {
        "scene_filter": {
            "_target_": "navsim.common.dataclasses.SceneFilter",
            "_convert_": "all",
            "num_history_frames": HISTORY,
            "num_future_frames": STAGE_ONE_FUTURE,
            "frame_interval": 1,
            "has_route": True,
            "max_scenes": None,
            "include_synthetic_scenes": True,
            "log_names": None,
            "tokens": [t for now, prev, _ in mapping for t in (now, prev)],
            "synthetic_scene_tokens": synthetic,
            "reactive_synthetic_initial_tokens": list(synthetic),
            "non_reactive_synthetic_initial_tokens": [],
        },
        "data_split": split,
        "reactive_all_mapping": [[now, prev, [list(p) for p in pairs]] for now, prev, pairs in mapping],
    }
    path = out / CONFIG_DIR / "train_test_split" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return TwoStageSplit.load(path, out / SCENES_DIR)


# ---------------------------------------------------------------------------------------------------------------
# scoring


def load_scenes(split: TwoStageSplit, data_root: Path) -> dict[str, Scene]:
    """Every scene of both stages by token (stage one from the logs, stage two from the pickles)."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    sensor_root = Path(data_root) / "sensor_blobs" / split.data_split
    loader = SceneLoader(
        split.data_split,
        data_root=data_root,
        scene_filter=SceneFilter(
            num_history_frames=HISTORY, num_future_frames=SYNTHETIC_FUTURE, frame_interval=1
        ),
    )
    scenes = {t: loader.get_scene(t) for t in split.stage_one}
    for t in split.stage_two:
        scenes[t] = read_synthetic_scene(split.scenes_path / f"{t}.pkl", sensor_root, Path(data_root))
    return scenes


def contexts_of(scenes: dict[str, Scene], stage_two: set[str]) -> dict:
    """ScoringContexts; second-stage scenes are synthetic (no human filter, no logged future)."""
    from navsim_adapter.pdm import build_context

    return {t: replace(build_context(s), is_synthetic=t in stage_two) for t, s in scenes.items()}


def write_metric_cache(split: TwoStageSplit, data_root: Path, out: Path) -> Path:
    """A navsim 2.x metric cache of both stages (written with the official classes)."""
    from navsim_adapter.pdm.metric_cache import dump_metric_cache
    from navsim_adapter.pdm.official import to_metric_cache

    scenes = load_scenes(split, data_root)
    for token, ctx in contexts_of(scenes, set(split.stage_two)).items():
        dump_metric_cache(to_metric_cache(ctx), out, token, scenes[token].metadata.log_name)
    return Path(out)


def score_two_stage(
    split: TwoStageSplit,
    data_root: Path,
    planners: dict[str, Callable[[list[Scene]], np.ndarray]],
    metric_cache: Path | None = None,
) -> dict[str, list[dict]]:
    """Rows (one list per planner) as navsim's two-stage csv: per token, then the three aggregates.

    Contexts come from navsim's `metric_cache` of both stages when given (real data), else from the scenes."""
    from navsim_adapter.evaluation import report
    from navsim_adapter.geometry import local_to_global
    from navsim_adapter.pdm import score
    from navsim_adapter.pdm.metrics import extended_comfort

    scenes = load_scenes(split, data_root)
    stage_two = set(split.stage_two)
    if metric_cache is None:
        ctxs = contexts_of(scenes, stage_two)
    else:
        from navsim_adapter.pdm.metric_cache import MetricCacheIndex

        index = MetricCacheIndex(metric_cache, "two-stage scoring")
        ctxs = {t: index.context(t, s.metadata.log_name) for t, s in scenes.items()}
    tokens = list(scenes)
    out = {}
    for name, plan in planners.items():
        trajs = np.asarray(plan([scenes[t] for t in tokens]), dtype=np.float64)
        result = score([ctxs[t] for t in tokens], trajs[:, None], on_invalid="zero", return_states=True)
        rec = {
            t: {k: float(getattr(result, k)[i, 0]) for k in METRICS if k != "ec"}
            for i, t in enumerate(tokens)
        }
        states = {t: result.simulated_states[i, 0] for i, t in enumerate(tokens)}
        end = {t: local_to_global(trajs[i, -1], ctxs[t].ego_state[:3])[:2] for i, t in enumerate(tokens)}
        start = {t: ctxs[t].ego_state[:2] for t in tokens}
        weight = {}
        for now, prev, pairs in split.mapping:
            for pair in [(now, prev), *pairs]:
                ec = float(extended_comfort(states[pair[0]][None], states[pair[1]][None])[0])
                for t in pair:
                    rec[t].update(ec=ec, score=report.epdms(rec[t], ec))
            for first, seconds in ((now, [p[0] for p in pairs]), (prev, [p[1] for p in pairs])):
                w = np.exp(
                    -np.array([((end[first] - start[s]) ** 2).sum() for s in seconds]) / (2 * SIGMA_SQUARED)
                )
                w = (
                    np.full(len(w), 1 / len(w))
                    if np.isclose(w.sum(), 0) or np.isnan(w.sum())
                    else w / w.sum()
                )
                weight.update({first: 1.0, **dict(zip(seconds, w, strict=True))})
        out[name] = _navsim_rows(split, rec, weight, stage_two)
    return out


def _navsim_rows(split: TwoStageSplit, rec: dict, weight: dict, stage_two: set[str]) -> list[dict]:
    cols = [*METRICS, "score"]

    def average(tokens: list[str]) -> dict:
        w = np.array([weight[t] for t in tokens])
        return {c: float((np.array([rec[t][c] for t in tokens]) * w).sum() / w.sum()) for c in cols}

    groups, firsts, seconds = [], [], []
    for now, prev, pairs in split.mapping:
        g = [
            (average([now]), average([p[0] for p in pairs])),
            (average([prev]), average([p[1] for p in pairs])),
        ]
        firsts += [a for a, _ in g]
        seconds += [b for _, b in g]
        groups.append({c: (g[0][0][c] * g[0][1][c] + g[1][0][c] * g[1][1][c]) / 2 for c in cols})
    mean = lambda rows, c: float(np.mean([r[c] for r in rows]))  # noqa: E731
    rows = []
    for t, r in rec.items():
        stage = "stage_two" if t in stage_two else "stage_one"
        rows.append(
            {
                "token": t,
                "valid": True,
                **{f"{METRICS[k]}_{stage}": r[k] for k in METRICS},
                "score": r["score"],
            }
        )
    one = {f"{METRICS[k]}_stage_one": mean(firsts, k) for k in METRICS}
    two = {f"{METRICS[k]}_stage_two": mean(seconds, k) for k in METRICS}
    rows.append({"token": AGGREGATE_ROWS[0], "valid": True, **one, "score": mean(firsts, "score")})
    rows.append({"token": AGGREGATE_ROWS[1], "valid": True, **two, "score": mean(seconds, "score")})
    rows.append({"token": AGGREGATE_ROWS[2], "valid": True, **one, **two, "score": mean(groups, "score")})
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    """navsim's two-stage csv columns: token, valid, <metric>_stage_one.., <metric>_stage_two.., score."""
    header = ["token", "valid"]
    header += [f"{METRICS[k]}_{s}" for s in ("stage_one", "stage_two") for k in METRICS] + ["score"]
    return tables.write_csv(path, header, rows)


def planners_for(checkpoint: Path | None, omega: float, steps: int | None, seed: int = 0) -> dict:
    """constant velocity, the logged human and (with a checkpoint) the policy at `omega`, as DipoleAgent samples it."""
    from navsim_adapter.baselines import constant_velocity
    from navsim_adapter.evaluation.report import omega_row
    from vla_dipole.data.observation import scene_observation
    from vla_dipole.inference import PolicyRunner

    planners = {
        "constant_velocity": lambda scenes: np.stack([constant_velocity(s) for s in scenes]),
        "human": lambda scenes: np.stack([s.get_future_trajectory(8) for s in scenes]),
    }
    if checkpoint is not None:
        runner = PolicyRunner.from_checkpoint(checkpoint, steps, seed=seed)
        planners[omega_row("dipole", omega)] = lambda scenes: runner.sample(
            [scene_observation(s, runner.spec) for s in scenes], [omega]
        )[:, 0]
    return planners


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m navsim_adapter.evaluation.two_stage", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="a two-stage split (+ its metric cache) from a synthetic split")
    w.add_argument("--data-root", type=Path, required=True)
    w.add_argument("--split", required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--name", default="synthetic_two_stage")
    w.add_argument("--metric-cache", type=Path, default=None, help="also write navsim's metric cache here")
    s = sub.add_parser("score", help="our two-stage EPDMS csvs (navsim's run_pdm_score.py format)")
    s.add_argument("--data-root", type=Path, required=True)
    s.add_argument(
        "--config", type=Path, required=True, help="train_test_split YAML with reactive_all_mapping"
    )
    s.add_argument("--scenes", type=Path, required=True, help="synthetic scene pickles")
    s.add_argument("--checkpoint", type=Path, default=None)
    add_sampling_args(s, omega=1.0, what="of --checkpoint ")
    s.add_argument("--metric-cache", type=Path, default=None, help="navsim metric cache of both stages")
    s.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "write":
        split = write_two_stage_split(a.data_root, a.split, a.out, a.name)
        if a.metric_cache is not None:
            write_metric_cache(split, a.data_root, a.metric_cache)
        return
    split = TwoStageSplit.load(a.config, a.scenes)
    a.out.mkdir(parents=True, exist_ok=True)
    from navsim_adapter.evaluation.report import csv_name

    planners = planners_for(a.checkpoint, a.omega, a.steps)
    for row, rows in score_two_stage(split, a.data_root, planners, a.metric_cache).items():
        write_csv(rows, a.out / csv_name(row, "two_stage"))


if __name__ == "__main__":
    main()
