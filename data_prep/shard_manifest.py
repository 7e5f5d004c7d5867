"""The manifest of a finished build: settings, image spec, sources, every shard's hash and the merged
per-shard statistics (trajectory moments, PDMS histograms). Its presence marks a complete build."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.shard_settings import BuildSettings
from vla_dipole.data.shard_format import SCHEMA_VERSION, SCORE_NAMES, SOURCES
from vla_dipole.data.shard_io import TrajStatsAccumulator, read_manifest, write_manifest


def write_build_manifest(
    out: Path,
    settings: BuildSettings,
    ordered: Sequence[Mapping[str, Any]],
    *,
    command: str | None,
    vocab_config: Mapping[str, Any] | None,
    skipped: int,
) -> dict[str, Any]:
    """Write OUT/manifest.json from the settings and the shards' sidecar records (in plan order)."""
    stats = TrajStatsAccumulator()
    for r in ordered:
        stats.merge(TrajStatsAccumulator(**r["stats"]))
    config = settings.to_json()
    src = settings.sources
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "split": settings.split,
        "data_root": settings.data_root,
        "command": command or _python_call(settings.data_root, settings.split, out, config),
        "config": config,
        "image": {
            "cameras": list(settings.cameras),
            "size": list(settings.image_size),
            "history_frames": settings.history_frames,
            "format": "jpeg",
            "quality": settings.jpeg_quality,
        },
        "scorer_version": settings.scorer_version,
        "score_names": list(SCORE_NAMES),
        "source_names": list(SOURCES),
        "candidate_sources": dict(src),
        "candidate_order": [k for k, _ in src],
        "num_candidates": sum(n for _, n in src),
        "vocabulary": None
        if vocab_config is None
        else {"path": "vocabulary", "sha256": vocab_config["sha256"], "size": vocab_config["size"]},
        "policy": dict(settings.policy) if settings.policy else None,
        "metric_cache": settings.metric_cache,
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
