"""Planning a shard build: which scenes (checked for a scoring source before any work), in which
shards, and the candidate vocabulary they draw from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.vocabulary import (
    VOCAB_ARRAY,
    fit_vocabulary,
    human_trajectories,
    load_vocabulary,
    open_split,
    vocabulary_hash,
)
from navsim_adapter.maps import synthetic_map_path

DEFAULT_VOCAB_SIZE = 256  # when build_shards fits the vocabulary itself


class ScoringSourceError(ValueError):
    """The split's scenes cannot be scored as asked (no JSON map and no metric cache, or nothing cached)."""


@dataclass
class ShardJob:
    index: int
    scenes: list[tuple[str, str]]  # (log_name, token)

    @property
    def logs(self) -> list[str]:
        return sorted({log for log, _ in self.scenes})


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


def prepare_vocabulary(
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
