"""Turn a NAVSIM split into scored webdataset shards: one sample per scene with images, ego status,
the human future, K candidate trajectories and every PDM sub-score (schema: docs/shards.md).

    python -m data_prep.build_shards --data-root DATA --split NAME --out OUT \
        [--sources vocab,perturb] [--num-candidates 16] [--vocabulary DIR] [--workers 2] [--shard-size 256] \
        [--metric-cache DIR [--missing-cache error|skip]]

Candidates are scored against a ScoringContext per scene: built from the scene and its map on the
synthetic world (JSON maps), or read from a NAVSIM metric cache (`--metric-cache`, built by navsim's
run_metric_caching.py) on real OpenScene logs, whose nuPlan maps only reach us through that cache.

Shards are built in parallel (one job per shard, a process pool) and are resumable: a shard is
written to a temporary file and renamed only when complete, with a sidecar in OUT/.build/; a
re-run with the same command builds only the missing shards, byte-identical to a full run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import MISSING, asdict, dataclass, field, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data_prep import candidates as cands
from data_prep.vocabulary import (
    VOCAB_ARRAY,
    fit_vocabulary,
    human_trajectories,
    load_vocabulary,
    open_split,
    save_vocabulary,
    vocabulary_hash,
)
from data_prep.worker_guard import die_with_parent
from vla_dipole.data.shard_format import (
    JPEG_QUALITY,
    NUM_POSES,
    SCHEMA_VERSION,
    SCORE_NAMES,
    SOURCES,
    Sample,
    decode_jpeg,
    encode_jpeg,
    source_codes,
)
from vla_dipole.data.shard_io import (
    TrajStatsAccumulator,
    read_manifest,
    sha256_file,
    shard_name,
    write_manifest,
    write_shard,
)

BUILD_DIR = ".build"
MAX_HISTORY = 4  # NAVSIM scenes have 4 history frames
DEFAULT_VOCAB_SIZE = 256  # when build_shards fits the vocabulary itself
SCORE_CHUNK = 16  # scenes scored per PDM call
EC_FILL = 1.0  # stored extended comfort when it cannot be computed (see docs/shards.md)
MISSING_CACHE_MODES = ("error", "skip")  # a scene without a metric-cache entry: fail, or leave it out


class ScoringSourceError(ValueError):
    """The split's scenes cannot be scored as asked (no JSON map and no metric cache, or nothing cached)."""


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines shard bytes (compared on resume); `workers` is deliberately absent."""

    data_root: str
    split: str
    cameras: tuple[str, ...]
    image_size: tuple[int, int]  # (W, H)
    history_frames: int
    sources: tuple[tuple[str, int], ...]  # (source, count) in candidate order
    shard_size: int
    limit: int | None
    seed: int
    frame_interval: int = 1
    jpeg_quality: int = JPEG_QUALITY
    vocab_mode: str = "mixed"
    vocabulary_sha256: str | None = None
    policy: Mapping[str, Any] | None = None
    metric_cache: str | None = None  # NAVSIM metric cache the contexts come from (None: scene + JSON map)
    missing_cache: str = "error"
    scorer_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = dict(self.sources)
        d["policy"] = dict(self.policy) if self.policy else None
        return json.loads(json.dumps(d))


@dataclass
class ShardJob:
    index: int
    scenes: list[tuple[str, str]]  # (log_name, token)

    @property
    def logs(self) -> list[str]:
        return sorted({log for log, _ in self.scenes})


@dataclass
class _WorkerState:
    settings: BuildSettings
    out: Path
    vocab: np.ndarray | None
    policy_sampler: Any = None
    loaders: dict = field(default_factory=dict)
    cache: Any = None  # MetricCacheIndex, opened by the worker on first use


# ------------------------------------------------------------------------------------- options


def parse_sources(
    sources: str | Sequence[str] | Mapping[str, int], num_candidates: int | str | Mapping[str, int]
):
    """-> ((source, count), ...). `sources` "vocab,perturb" or a list; counts one int for all, "vocab:8,perturb:4"
    or a mapping; a count given inside `sources` ("vocab:8") wins."""
    if isinstance(sources, Mapping):
        items = [(k, int(v)) for k, v in sources.items()]
    else:
        parts = sources.split(",") if isinstance(sources, str) else list(sources)
        per = num_candidates if isinstance(num_candidates, Mapping) else None
        if isinstance(num_candidates, str) and ":" in num_candidates:
            per = {k: int(v) for k, v in (p.split(":") for p in num_candidates.split(","))}
        items = []
        for part in (p.strip() for p in parts if p.strip()):
            name, _, count = part.partition(":")
            n = int(count) if count else (per[name] if per and name in per else None)
            if n is None:
                if per is not None:
                    raise ValueError(
                        f"--num-candidates {num_candidates!r} gives no count for source {name!r}"
                    )
                n = int(num_candidates)
            items.append((name, n))
    source_codes([k for k, _ in items])  # validates the names
    if not items or len({k for k, _ in items}) != len(items) or any(n < 1 for _, n in items):
        raise ValueError(f"sources must be distinct names from {SOURCES} with counts >= 1, got {items}")
    return tuple(items)


def parse_image_size(size: int | str | Sequence[int]) -> tuple[int, int]:
    """224 | "224" | "256x144" (W x H) | (W, H) -> (W, H)."""
    if isinstance(size, str):
        parts = size.lower().split("x")
        size = (int(parts[0]), int(parts[-1]))
    elif isinstance(size, int):
        size = (size, size)
    w, h = (int(v) for v in size)
    if w < 8 or h < 8:
        raise ValueError(f"image_size must be at least 8x8 pixels, got {w}x{h}")
    return w, h


# ----------------------------------------------------------------------------------- planning


def list_scenes(data_root: str | Path, split: str, frame_interval: int = 1) -> list[tuple[str, str, str]]:
    """(log_name, token, map_name) of every scene of the split, logs sorted, time order within a log."""
    loader = open_split(data_root, split, frame_interval)
    scenes = [(s.metadata.log_name, s.token, s.metadata.map_name) for s in loader.iter_scenes()]
    return sorted(scenes, key=lambda item: item[0])  # stable: keeps time order within a log


def select_scenes(
    scenes: Sequence[tuple[str, str, str]],
    limit: int | None,
    data_root: str,
    cache: Any = None,
    missing_cache: str = "error",
) -> tuple[list[tuple[str, str]], int]:
    """The (log, token) scenes to build and how many were skipped for lacking a metric-cache entry.

    Checked here, in the parent, so a build that cannot score its scenes fails before any work:
    without a cache every scene needs a synthetic JSON map; with one every scene needs an entry
    (or, with missing_cache="skip", scenes without one are left out before `limit` is applied).
    """
    if cache is None:
        chosen = list(scenes[:limit])
        _require_json_maps(sorted({m for _, _, m in chosen}), data_root)
        return [(log, tok) for log, tok, _ in chosen], 0
    if missing_cache == "error":
        chosen = list(scenes[:limit])
        absent = [(log, tok) for log, tok, _ in chosen if tok not in cache]
        if absent:
            log, tok = absent[0]
            raise cache.missing(
                tok,
                log,
                note=f"{len(absent)} of the {len(chosen)} scenes to build lack an entry (--missing-cache skip "
                "builds only the cached scenes and counts the others in the manifest)",
            )
        return [(log, tok) for log, tok, _ in chosen], 0
    kept, skipped = [], 0
    for log, tok, _ in scenes:
        if limit is not None and len(kept) >= limit:
            break
        if tok in cache:
            kept.append((log, tok))
        else:
            skipped += 1
    if not kept:
        raise ScoringSourceError(
            f"none of the {len(scenes)} scenes has an entry in the metric cache {cache.root}: "
            "was it built for another split (train_test_split=...)?"
        )
    return kept, skipped


def _require_json_maps(map_names: list[str], data_root: str) -> None:
    from navsim_adapter.maps import synthetic_map_path

    missing = [m for m in map_names if not synthetic_map_path(m, data_root).is_file()]
    if missing:
        raise ScoringSourceError(
            f"{data_root}: no synthetic JSON map for map(s) {missing} (looked for "
            f"{synthetic_map_path(missing[0], data_root)}). Real OpenScene logs use nuPlan maps, which "
            "build_shards reads through a NAVSIM metric cache: build one with navsim's run_metric_caching.py "
            "(train_test_split=navtrain metric_cache_path=DIR) and pass --metric-cache DIR"
        )


def plan_shards(scenes: Sequence[tuple[str, str]], shard_size: int) -> list[ShardJob]:
    """Shards of `shard_size` consecutive (log, token) scenes."""
    scenes = list(scenes)
    return [ShardJob(i // shard_size, scenes[i : i + shard_size]) for i in range(0, len(scenes), shard_size)]


def _scene_loader(state: _WorkerState, logs: list[str]):
    key = tuple(logs)
    if key not in state.loaders:
        state.loaders.clear()
        s = state.settings
        state.loaders[key] = open_split(s.data_root, s.split, s.frame_interval, log_names=logs)
    return state.loaders[key]


# ------------------------------------------------------------------------------------ per scene


def scene_rng(seed: int, token: str) -> np.random.Generator:
    """Per-scene generator: the same scene gets the same candidates whatever worker builds it."""
    return np.random.default_rng([seed, int(hashlib.sha256(token.encode()).hexdigest()[:15], 16)])


def scene_sample(scene, settings: BuildSettings) -> Sample:
    """Everything of a sample except candidates and scores (also the evaluation agent's observation)."""
    h = settings.history_frames
    agent = scene.get_agent_input(cameras=settings.cameras, history_indices=list(range(-h, 0)))
    statuses = agent.ego_statuses[-h:]
    images = []
    for i, cams in enumerate(agent.cameras[-h:]):
        for cam in settings.cameras:
            image = getattr(cams, cam).image
            if image is None:
                raise ValueError(
                    f"scene {scene.token} (log {scene.metadata.log_name}): camera {cam} has no image "
                    f"in history frame {i - h + 1} (check the log's cams entries)"
                )
            images.append(encode_jpeg(image, settings.image_size, settings.jpeg_quality))
    current = scene.current_frame
    empty = np.zeros((0, NUM_POSES, 3), np.float32)
    return Sample(
        token=scene.token,
        log_name=scene.metadata.log_name,
        map_name=scene.metadata.map_name,
        split=settings.split,
        timestamp_us=int(current.timestamp),
        cameras=list(settings.cameras),
        image_size=settings.image_size,
        images=images,
        ego_pose=np.stack([s.ego_pose for s in statuses]),
        ego_velocity=np.stack([s.ego_velocity for s in statuses]),
        ego_acceleration=np.stack([s.ego_acceleration for s in statuses]),
        driving_command=np.stack([s.driving_command for s in statuses]),
        human=scene.get_future_trajectory(NUM_POSES).astype(np.float32),
        candidates=empty,
        sources=np.zeros(0, np.uint8),
        candidate_scores=np.zeros((0, len(SCORE_NAMES)), np.float32),
        human_scores=np.zeros(len(SCORE_NAMES), np.float32),
    )


def decoded_view(sample: Sample) -> dict[str, Any]:
    """What the loader would yield for this sample (for policy sampling at build time and evaluation)."""
    return {
        "images": np.stack([decode_jpeg(j) for j in sample.images]),
        "ego_pose": sample.ego_pose,
        "ego_velocity": sample.ego_velocity,
        "ego_acceleration": sample.ego_acceleration,
        "driving_command": sample.driving_command,
        "human": sample.human,
        "token": sample.token,
        "log_name": sample.log_name,
    }


def _add_candidates(samples: list[Sample], state: _WorkerState) -> None:
    s = state.settings
    per_source: list[list[np.ndarray]] = [[] for _ in samples]
    for name, n in s.sources:
        if name == "policy":
            trajs = state.policy_sampler.sample(
                [decoded_view(x) for x in samples],
                n,
                seed=int(scene_rng(s.seed, samples[0].token).integers(2**31)),
            )
            for j in range(len(samples)):
                per_source[j].append(trajs[j])
            continue
        for j, sample in enumerate(samples):
            rng = scene_rng(s.seed + SOURCES.index(name), sample.token)
            if name == "vocab":
                per_source[j].append(cands.vocab_candidates(state.vocab, sample.human, n, rng, s.vocab_mode))
            else:
                per_source[j].append(cands.perturb_candidates(sample.human, n, rng))
    codes = np.concatenate([np.full(n, SOURCES.index(name), np.uint8) for name, n in s.sources])
    for sample, parts in zip(samples, per_source, strict=True):
        sample.candidates = np.concatenate(parts).astype(np.float32)
        sample.sources = codes


def _contexts(scenes: list, state: _WorkerState) -> list:
    """ScoringContexts: read from the metric cache when the build has one (real logs), else built from
    the scene and its JSON map. The cache's csv and pickles are read here, in the worker."""
    from navsim_adapter.pdm import build_context

    path = state.settings.metric_cache
    if path is None:
        return [build_context(scene) for scene in scenes]
    if state.cache is None:
        from navsim_adapter.pdm.metric_cache import MetricCacheIndex

        state.cache = MetricCacheIndex(path, "scoring shard candidates")
    return [state.cache.context(scene.token, scene.metadata.log_name) for scene in scenes]


def _add_scores(samples: list[Sample], contexts: list, score_fn) -> None:
    trajs = np.stack([np.concatenate([x.candidates, x.human[None]]) for x in samples])
    result = score_fn(contexts, trajs, return_states=False)
    table = np.stack([np.asarray(getattr(result, name), dtype=np.float32) for name in SCORE_NAMES], axis=-1)
    # EC needs the previous frame's simulated states of the same policy, which candidates do not have:
    # the scorer leaves it NaN (and EPDMS re-normalises without it, as NAVSIM does); we store 1.0.
    ec = SCORE_NAMES.index("ec")
    table[..., ec] = np.nan_to_num(table[..., ec], nan=EC_FILL)
    if table.shape != (*trajs.shape[:2], len(SCORE_NAMES)):
        raise ValueError(f"PDM score returned shape {table.shape[:-1]}, expected {trajs.shape[:2]}")
    for sample, row in zip(samples, table, strict=True):
        sample.candidate_scores, sample.human_scores = row[:-1], row[-1]


# ---------------------------------------------------------------------------------- per shard


_STATE: _WorkerState | None = None


def _init_worker(
    settings: BuildSettings,
    out: str,
    vocab: np.ndarray | None,
    policy: Mapping[str, Any] | None,
    sampler: cands.PolicySampler | None = None,
    parent_pid: int | None = None,
) -> None:
    global _STATE
    if parent_pid is not None:  # a pool worker: exit with the build (kill -9 included)
        die_with_parent(parent_pid)
    if policy and sampler is None:
        sampler = cands.PolicySampler(policy["checkpoint"], policy["omega"], policy.get("num_steps"))
    _STATE = _WorkerState(settings, Path(out), vocab, sampler)


def _build_shard(job: ShardJob) -> dict[str, Any]:
    """Write one shard (tmp file, then rename) and its sidecar; returns the sidecar record."""
    from navsim_adapter.pdm import score

    state = _STATE
    assert state is not None, "worker not initialised"
    s = state.settings
    loader = _scene_loader(state, job.logs)
    name = shard_name(s.split, job.index)
    final, tmp = state.out / name, state.out / f"{name}.tmp"
    histogram = {src: np.zeros(10, np.int64) for src, _ in s.sources}

    def samples():
        for start in range(0, len(job.scenes), SCORE_CHUNK):
            scenes = [loader.get_scene(tok) for _, tok in job.scenes[start : start + SCORE_CHUNK]]
            chunk = [scene_sample(scene, s) for scene in scenes]
            _add_candidates(chunk, state)
            _add_scores(chunk, _contexts(scenes, state), score)
            for sample in chunk:
                pdms = sample.candidate_scores[:, SCORE_NAMES.index("pdms")]
                for src, _ in s.sources:
                    mask = sample.sources == SOURCES.index(src)
                    histogram[src] += np.histogram(pdms[mask], bins=10, range=(0.0, 1.0))[0]
                yield sample

    record = write_shard(tmp, samples())
    record["pdms_histogram"] = {k: v.tolist() for k, v in histogram.items()}
    sidecar = state.out / BUILD_DIR / f"{name}.json"
    sidecar.with_suffix(".tmp").write_text(json.dumps(record, sort_keys=True))
    sidecar.with_suffix(".tmp").replace(sidecar)
    tmp.replace(final)
    return record


def _done_record(out: Path, name: str) -> dict[str, Any] | None:
    """The sidecar of a finished shard whose bytes still match it, else None."""
    sidecar, tar = out / BUILD_DIR / f"{name}.json", out / name
    if not (sidecar.is_file() and tar.is_file()):
        return None
    record = json.loads(sidecar.read_text())
    return record if record.get("sha256") == sha256_file(tar) else None


# ---------------------------------------------------------------------------------------- build


def _prepare_vocabulary(
    data_root: str,
    split: str,
    out: Path,
    limit: int | None,
    frame_interval: int,
    vocabulary: str | Path | None,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The given vocabulary, else the one of an earlier run in OUT/vocabulary, else one fitted on the
    scenes being built. Nothing is written here (settings are checked first)."""
    target = out / "vocabulary"
    if vocabulary is not None:
        return load_vocabulary(vocabulary)
    if (target / VOCAB_ARRAY).is_file():
        return load_vocabulary(target)
    trajs = human_trajectories(data_root, split, limit, frame_interval)
    config = {
        "split": split,
        "data_root": data_root,
        "requested_size": DEFAULT_VOCAB_SIZE,
        "seed": seed,
        "num_trajectories": int(len(trajs)),
        "limit": limit,
        "frame_interval": frame_interval,
        "method": "kmeans2(x,y)++",
    }
    vocab = fit_vocabulary(trajs, min(DEFAULT_VOCAB_SIZE, len(trajs)), seed)
    return vocab, {**config, "size": len(vocab), "sha256": vocabulary_hash(vocab)}


def build_shards(
    data_root: str | Path,
    split: str,
    out: str | Path,
    *,
    cameras: Sequence[str] = ("cam_f0",),
    image_size: int | str | Sequence[int] = (224, 224),
    history_frames: int = 1,
    sources: str | Sequence[str] | Mapping[str, int] = ("vocab", "perturb"),
    num_candidates: int | str | Mapping[str, int] = 8,
    workers: int = 1,
    shard_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    vocabulary: str | Path | None = None,
    frame_interval: int = 1,
    policy: str | Path | None = None,
    omega: float = 0.0,
    policy_steps: int | None = None,
    vocab_mode: str = "mixed",
    jpeg_quality: int = JPEG_QUALITY,
    overwrite: bool = False,
    command: str | None = None,
    max_shards: int | None = None,
    part: int | None = None,
    num_parts: int = 1,
    metric_cache: str | Path | None = None,
    missing_cache: str = "error",
) -> dict[str, Any]:
    """Build (or finish) the shards of one split; returns the manifest (also written to OUT/manifest.json).

    `metric_cache` (a NAVSIM metric cache dir) supplies every scene's ScoringContext, as real logs need;
    without it the split must be synthetic (JSON maps). `missing_cache="skip"` leaves out scenes the
    cache lacks (counted in the manifest's `skipped_scenes`) instead of failing.

    `max_shards` stops after building that many new shards without writing the manifest (used to
    test resuming; a normal run leaves it None). `part`/`num_parts` build only shards
    `part, part + num_parts, ...` of the plan and never write the manifest: several processes
    (a SLURM array) can fill one OUT, and a final run without `part` checks them and writes it.
    """
    from navsim_adapter.pdm import SCORER_VERSION

    out = Path(out)
    src = parse_sources(sources, num_candidates)
    names = [k for k, _ in src]
    if "policy" in names and policy is None:
        raise ValueError(
            "candidate source 'policy' needs --policy CKPT (a DipolePolicy checkpoint directory)"
        )
    if policy is not None and "policy" not in names:
        src = (*src, ("policy", int(num_candidates) if isinstance(num_candidates, int) else 8))
    if not 1 <= history_frames <= MAX_HISTORY:
        raise ValueError(f"history_frames must be in 1..{MAX_HISTORY}, got {history_frames}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if vocab_mode not in cands.VOCAB_MODES:
        raise ValueError(f"vocab_mode must be one of {cands.VOCAB_MODES}, got {vocab_mode!r}")
    cameras = tuple(cameras.split(",") if isinstance(cameras, str) else cameras)
    from navsim_adapter.scene import CAMERA_NAMES

    unknown = [c for c in cameras if c not in CAMERA_NAMES]
    if unknown or not cameras:
        raise ValueError(f"cameras {list(cameras)}: expected a non-empty subset of {CAMERA_NAMES}")
    data_root = str(Path(data_root).resolve())
    if num_parts < 1 or (part is not None and not 0 <= part < num_parts):
        raise ValueError(f"part {part} of {num_parts}: need num_parts >= 1 and 0 <= part < num_parts")
    if part is not None and overwrite:
        raise ValueError("--overwrite with --part would delete the other parts' shards")
    if missing_cache not in MISSING_CACHE_MODES:
        raise ValueError(f"missing_cache must be one of {MISSING_CACHE_MODES}, got {missing_cache!r}")
    cache = None
    if metric_cache is not None:
        from navsim_adapter.pdm.metric_cache import MetricCacheIndex

        metric_cache = str(Path(metric_cache).resolve())
        cache = MetricCacheIndex(metric_cache, "scoring shard candidates with --metric-cache")

    scenes, skipped = select_scenes(
        list_scenes(data_root, split, frame_interval), limit, data_root, cache, missing_cache
    )
    if overwrite and out.exists():
        shutil.rmtree(out)
    (out / BUILD_DIR).mkdir(parents=True, exist_ok=True)
    jobs = plan_shards(scenes, shard_size)
    mine = [j for j in jobs if part is None or j.index % num_parts == part]
    own = {shard_name(split, j.index) for j in mine}
    for stale in out.glob("*.tmp"):  # only our own leftovers: other parts may be writing theirs
        if part is None or any(stale.name.startswith(name) for name in own):
            stale.unlink()
    vocab, vocab_config = None, None
    if "vocab" in [k for k, _ in src]:
        vocab, vocab_config = _prepare_vocabulary(
            data_root, split, out, limit, frame_interval, vocabulary, seed
        )
        n_vocab = dict(src)["vocab"]
        if n_vocab > len(vocab):
            raise ValueError(
                f"{n_vocab} vocab candidates per scene but the vocabulary has {len(vocab)} entries"
            )
    policy_config, sampler = None, None
    if policy is not None:
        policy_config = {
            "checkpoint": str(Path(policy).resolve()),
            "omega": float(omega),
            "num_steps": policy_steps,
        }
        sampler = cands.PolicySampler(policy, omega, policy_steps)  # fails fast, before any worker starts
    settings = BuildSettings(
        data_root=data_root,
        split=split,
        cameras=cameras,
        image_size=parse_image_size(image_size),
        history_frames=history_frames,
        sources=src,
        shard_size=shard_size,
        limit=limit,
        seed=seed,
        frame_interval=frame_interval,
        jpeg_quality=jpeg_quality,
        vocab_mode=vocab_mode,
        vocabulary_sha256=vocab_config["sha256"] if vocab_config else None,
        policy=policy_config,
        metric_cache=metric_cache,
        missing_cache=missing_cache,
        scorer_version=str(SCORER_VERSION),
    )
    _check_settings(out, settings)
    if vocab_config is not None and not (out / "vocabulary" / VOCAB_ARRAY).is_file():
        save_vocabulary(
            out / "vocabulary", vocab, {k: v for k, v in vocab_config.items() if k not in ("size", "sha256")}
        )

    records = {job.index: _done_record(out, shard_name(split, job.index)) for job in jobs}
    todo = [job for job in mine if records[job.index] is None][:max_shards]
    bar = tqdm(
        total=sum(len(j.scenes) for j in jobs),
        initial=sum(len(j.scenes) for j in jobs if records[j.index]),
        desc=f"shards {split}",
        unit="scene",
    )
    init_args = (settings, str(out), vocab, policy_config)
    if workers <= 1 or len(todo) <= 1:
        _init_worker(*init_args, sampler=sampler)
        for job in todo:
            records[job.index] = _build_shard(job)
            bar.update(len(job.scenes))
    else:
        with ProcessPoolExecutor(
            min(workers, len(todo)),
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(*init_args, None, os.getpid()),
        ) as pool:
            futures = {pool.submit(_build_shard, job): job for job in todo}
            for future in as_completed(futures):
                records[futures[future].index] = future.result()
                bar.update(len(futures[future].scenes))
    bar.close()
    if part is not None or any(r is None for r in records.values()):
        return {
            "complete": False,
            "shards_done": sum(r is not None for r in records.values()),
            "shards": len(jobs),
            "part": part,
            "num_parts": num_parts,
        }

    ordered = [records[job.index] for job in jobs]
    stats = TrajStatsAccumulator()
    for r in ordered:
        stats.merge(TrajStatsAccumulator(**r["stats"]))
    config = settings.to_json()
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "split": split,
        "data_root": data_root,
        "command": command or _python_call(data_root, split, out, config),
        "config": config,
        "image": {
            "cameras": list(cameras),
            "size": list(settings.image_size),
            "history_frames": history_frames,
            "format": "jpeg",
            "quality": jpeg_quality,
        },
        "scorer_version": str(SCORER_VERSION),
        "score_names": list(SCORE_NAMES),
        "source_names": list(SOURCES),
        "candidate_sources": dict(src),
        "candidate_order": [k for k, _ in src],
        "num_candidates": sum(n for _, n in src),
        "vocabulary": None
        if vocab_config is None
        else {"path": "vocabulary", "sha256": vocab_config["sha256"], "size": vocab_config["size"]},
        "policy": policy_config,
        "metric_cache": metric_cache,
        "skipped_scenes": {"not_in_metric_cache": skipped},
        "num_samples": sum(r["samples"] for r in ordered),
        "shards": [{k: r[k] for k in ("name", "samples", "sha256", "bytes")} for r in ordered],
        "pdms_histogram": _merge_histograms(r["pdms_histogram"] for r in ordered),
        "traj_stats": stats.result(),
    }
    write_manifest(out, manifest)
    return read_manifest(out)


def _merge_histograms(parts: Iterable[Mapping[str, list[int]]]) -> dict[str, list[int]]:
    total: dict[str, np.ndarray] = {}
    for part in parts:
        for k, v in part.items():
            total[k] = total.get(k, 0) + np.asarray(v)
    return {k: v.tolist() for k, v in total.items()}


def _python_call(data_root: str, split: str, out: Path, config: Mapping[str, Any]) -> str:
    return f"build_shards({data_root!r}, {split!r}, {str(out)!r}, **{dict(config)!r})"


def _check_settings(out: Path, settings: BuildSettings) -> None:
    """Refuse to resume into a directory built with other settings (its shards would not match)."""
    path = out / BUILD_DIR / "settings.json"
    current = settings.to_json()
    if path.is_file():
        # a field added since that build compares as its default (an older build had no other value)
        defaults = {f.name: f.default for f in fields(BuildSettings) if f.default is not MISSING}
        previous = {**json.loads(json.dumps(defaults)), **json.loads(path.read_text())}
        diff = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if diff:
            raise ValueError(
                f"{out} holds shards built with other settings (differences: {diff}); "
                "use a new --out or pass --overwrite"
            )
    else:
        path.write_text(json.dumps(current, indent=2, sort_keys=True))


def _listed(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


def observation_settings(a: argparse.Namespace) -> dict[str, Any]:
    """cameras / image_size / history_frames / jpeg_quality from --model, else the flags (or defaults);
    a flag that contradicts --model is an error naming both values."""
    flags = {
        "cameras": a.cameras.split(",") if a.cameras else None,
        "image_size": parse_image_size(a.image_size) if a.image_size else None,
        "history_frames": a.history_frames,
        "jpeg_quality": a.jpeg_quality,
    }
    defaults = {
        "cameras": ["cam_f0"],
        "image_size": (224, 224),
        "history_frames": 1,
        "jpeg_quality": JPEG_QUALITY,
    }
    if a.model is None:
        return {k: defaults[k] if v is None else v for k, v in flags.items()}
    from vla_dipole.model.observation_spec import load_model_config, shard_settings

    model = shard_settings(load_model_config(a.model).observation)
    for key, value in flags.items():
        want = model.get(key)
        if value is None or want is None:
            continue
        ok = value >= want if key == "history_frames" else _listed(value) == _listed(want)
        if not ok:
            raise ValueError(
                f"--{key.replace('_', '-')} {value} contradicts --model {a.model}, which reads {key}={want}"
            )
    given = {k: v for k, v in flags.items() if v is not None}
    return {**defaults, **model, **given}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data-root", required=True, help="OpenScene-format root (navsim_logs/<split>/*.pkl, sensor_blobs/)"
    )
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--model",
        default=None,
        help="model preset (openvla-7b, tiny, ...), model YAML or policy dir: store what it reads (its "
        "observation: cameras, history frames, image size); the three flags below then must agree",
    )
    p.add_argument("--cameras", default=None, help="comma-separated camera names (default cam_f0)")
    p.add_argument("--image-size", default=None, help="stored image size WxH or one number (default 224x224)")
    p.add_argument(
        "--history-frames",
        type=int,
        default=None,
        help="frames of images / ego status to store (1-4, default 1)",
    )
    p.add_argument(
        "--sources",
        default="vocab,perturb",
        help="candidate sources: vocab, perturb, policy (src:N sets a count)",
    )
    p.add_argument("--num-candidates", default="8", help="candidates per source (N or vocab:N,perturb:M)")
    p.add_argument(
        "--vocabulary", default=None, help="vocabulary artifact dir (default: fit one on the split)"
    )
    p.add_argument("--vocab-mode", default="mixed", choices=cands.VOCAB_MODES)
    p.add_argument("--policy", default=None, help="DipolePolicy checkpoint for the 'policy' source")
    p.add_argument(
        "--samples", type=int, default=None, help="policy samples per scene (default: --num-candidates)"
    )
    p.add_argument("--omega", type=float, default=0.0, help="guidance weight for policy samples")
    p.add_argument("--policy-steps", type=int, default=None, help="denoising steps for policy samples")
    p.add_argument(
        "--metric-cache",
        default=None,
        help="NAVSIM metric cache dir (navsim's run_metric_caching.py): scores real logs (nuPlan maps)",
    )
    p.add_argument(
        "--missing-cache",
        default="error",
        choices=MISSING_CACHE_MODES,
        help="a scene without a metric-cache entry: fail (default) or skip it (counted in the manifest)",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shard-size", type=int, default=256, help="scenes per shard")
    p.add_argument("--limit", type=int, default=None, help="only the first N scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frame-interval", type=int, default=1, help="a scene every N frames (1 = every frame)")
    p.add_argument("--jpeg-quality", type=int, default=None, help=f"default {JPEG_QUALITY}")
    p.add_argument("--overwrite", action="store_true", help="delete OUT first")
    p.add_argument(
        "--part", type=int, default=None, help="build only shards part, part+N, ... (SLURM array task)"
    )
    p.add_argument(
        "--num-parts", type=int, default=1, help="N for --part; then re-run without --part to finish"
    )
    a = p.parse_args(argv)
    try:
        observation = observation_settings(a)
    except ValueError as err:
        raise SystemExit(f"build_shards: {err}") from None
    num: int | str = int(a.num_candidates) if a.num_candidates.isdigit() else a.num_candidates
    sources = a.sources
    if a.policy is not None and a.samples is not None:
        sources = ",".join(
            [s for s in sources.split(",") if not s.startswith("policy")] + [f"policy:{a.samples}"]
        )
    from navsim_adapter.pdm.metric_cache import MissingTokenError

    try:
        manifest = build_shards(
            a.data_root,
            a.split,
            a.out,
            **observation,
            sources=sources,
            num_candidates=num,
            workers=a.workers,
            shard_size=a.shard_size,
            limit=a.limit,
            seed=a.seed,
            frame_interval=a.frame_interval,
            vocabulary=a.vocabulary,
            policy=a.policy,
            omega=a.omega,
            policy_steps=a.policy_steps,
            vocab_mode=a.vocab_mode,
            overwrite=a.overwrite,
            part=a.part,
            num_parts=a.num_parts,
            metric_cache=a.metric_cache,
            missing_cache=a.missing_cache,
            command=shlex.join(
                [Path(sys.executable).name, "-m", "data_prep.build_shards", *(argv or sys.argv[1:])]
            ),
        )
    except (ScoringSourceError, MissingTokenError) as err:  # bad input: one message, no traceback
        raise SystemExit(f"build_shards: {err}") from None
    if not manifest.get("complete", True):
        print(
            f"part {a.part} of {a.num_parts}: {manifest['shards_done']} of {manifest['shards']} shards done in "
            f"{a.out}; run again without --part to finish and write the manifest"
        )
        return
    print(
        f"{manifest['num_samples']} scenes x {manifest['num_candidates']} candidates in "
        f"{len(manifest['shards'])} shards -> {a.out}/manifest.json"
    )


if __name__ == "__main__":
    main()
