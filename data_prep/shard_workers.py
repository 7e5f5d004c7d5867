"""Building the planned shards: one job per shard, in this process or a spawned process pool.

Each shard is written to a temporary file and renamed only when complete, with a sidecar record in
OUT/.build/; a finished shard whose bytes still match its sidecar is not rebuilt, so a re-run builds
only the missing shards, byte-identical to a full run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data_prep.reference_plans import plans_path, save_plans
from data_prep.shard_plan import ShardJob
from data_prep.shard_scoring import SCORE_CHUNK, ContextSource, add_candidates, add_scores, scene_sample
from data_prep.shard_settings import BUILD_DIR, BuildSettings
from data_prep.vocabulary import open_split
from data_prep.worker_guard import die_with_parent
from navsim_adapter.pdm import score
from vla_dipole.data.shard_format import SCORE_NAMES, SOURCES
from vla_dipole.data.shard_io import sha256_file, shard_name, write_shard


@dataclass
class _WorkerState:
    settings: BuildSettings
    out: Path
    vocab: np.ndarray | None
    runner: Any = None  # vla_dipole.inference.PolicyRunner of the policy source
    omega: float = 0.0
    reference_plans: Mapping[str, np.ndarray] | None = None  # an earlier build's, by scene token
    contexts: ContextSource = field(init=False)
    loaders: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.contexts = ContextSource(self.settings.metric_cache, self.reference_plans)

    def loader(self, logs: list[str]):
        key = tuple(logs)
        if key not in self.loaders:
            self.loaders.clear()
            s = self.settings
            self.loaders[key] = open_split(s.data_root, s.split, s.frame_interval, log_names=logs)
        return self.loaders[key]


_STATE: _WorkerState | None = None


def _init_worker(
    settings: BuildSettings,
    out: str,
    vocab: np.ndarray | None,
    runner: Any = None,
    parent_pid: int | None = None,
    reference_plans: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Per-process state; a pool worker loads the policy source's checkpoint itself (`settings.policy`)."""
    global _STATE
    if parent_pid is not None:  # a pool worker: exit with the build (kill -9 included)
        die_with_parent(parent_pid)
    policy = settings.policy
    if policy and runner is None:
        # imported here: torch loads into a worker only when the build samples a policy
        from vla_dipole.inference import PolicyRunner

        runner = PolicyRunner.from_checkpoint(policy["checkpoint"], policy.get("num_steps"), need_spec=False)
    omega = float(policy["omega"]) if policy else 0.0
    _STATE = _WorkerState(settings, Path(out), vocab, runner, omega, reference_plans)


def _build_shard(job: ShardJob) -> dict[str, Any]:
    """Write one shard (tmp file, then rename) and its sidecar; returns the sidecar record."""
    state = _STATE
    assert state is not None, "worker not initialised"
    s = state.settings
    loader = state.loader(job.logs)
    name = shard_name(s.split, job.index)
    final, tmp = state.out / name, state.out / f"{name}.tmp"
    histogram = {src: np.zeros(10, np.int64) for src, _ in s.sources}
    plans: dict[str, np.ndarray] = {}

    def samples():
        for start in range(0, len(job.scenes), SCORE_CHUNK):
            scenes = [loader.get_scene(tok) for _, tok in job.scenes[start : start + SCORE_CHUNK]]
            chunk = [scene_sample(scene, s) for scene in scenes]
            add_candidates(chunk, s, state.vocab, state.runner, state.omega)
            contexts = state.contexts(scenes)
            add_scores(chunk, contexts, score)
            given = state.reference_plans or {}
            plans.update((ctx.token, ctx.reference_poses) for ctx in contexts if ctx.token not in given)
            for sample in chunk:
                pdms = sample.candidate_scores[:, SCORE_NAMES.index("pdms")]
                for src, _ in s.sources:
                    mask = sample.sources == SOURCES.index(src)
                    histogram[src] += np.histogram(pdms[mask], bins=10, range=(0.0, 1.0))[0]
                yield sample

    record = write_shard(tmp, samples())
    record["pdms_histogram"] = {k: v.tolist() for k, v in histogram.items()}
    if s.metric_cache is None and plans:  # plans this build computed: kept for later builds
        save_plans(plans_path(state.out, name), plans)
    sidecar = state.out / BUILD_DIR / f"{name}.json"
    sidecar.with_suffix(".tmp").write_text(json.dumps(record, sort_keys=True))
    sidecar.with_suffix(".tmp").replace(sidecar)
    tmp.replace(final)
    return record


def done_record(out: Path, name: str) -> dict[str, Any] | None:
    """The sidecar of a finished shard whose bytes still match it, else None."""
    sidecar, tar = out / BUILD_DIR / f"{name}.json", out / name
    if not (sidecar.is_file() and tar.is_file()):
        return None
    record = json.loads(sidecar.read_text())
    return record if record.get("sha256") == sha256_file(tar) else None


def run_jobs(
    todo: Sequence[ShardJob],
    records: dict[int, Mapping[str, Any] | None],
    jobs: Sequence[ShardJob],
    settings: BuildSettings,
    out: Path,
    vocab: np.ndarray | None,
    workers: int = 1,
    runner: Any = None,
    reference_plans: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Build `todo` and fill `records` (job index -> sidecar record); progress counts every planned scene.

    `runner` (a loaded PolicyRunner) serves the policy source in this process. A pool (workers > 1)
    cannot take an in-memory policy: each worker loads the checkpoint named in `settings.policy`.
    """
    bar = tqdm(
        total=sum(len(j.scenes) for j in jobs),
        initial=sum(len(j.scenes) for j in jobs if records[j.index]),
        desc=f"shards {settings.split}",
        unit="scene",
    )
    if workers <= 1 or len(todo) <= 1:
        _init_worker(settings, str(out), vocab, runner, reference_plans=reference_plans)
        for job in todo:
            records[job.index] = _build_shard(job)
            bar.update(len(job.scenes))
    else:
        with ProcessPoolExecutor(
            min(workers, len(todo)),
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(settings, str(out), vocab, None, os.getpid(), reference_plans),
        ) as pool:
            futures = {pool.submit(_build_shard, job): job for job in todo}
            for future in as_completed(futures):
                records[futures[future].index] = future.result()
                bar.update(len(futures[future].scenes))
    bar.close()
