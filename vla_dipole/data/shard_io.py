"""Shard files and their manifest: the deterministic tar writer, OUT/manifest.json and the
trajectory statistics merged across shards. The sample codec they carry is `shard_format`.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_dipole.data.shard_format import SCHEMA_VERSION, SCORE_NAMES, SOURCES, Sample, encode_sample

MANIFEST_NAME = "manifest.json"


class ShardWriter:
    """Writes webdataset samples to an uncompressed tar with fixed owner, mode and mtime and members
    sorted per sample, so the same samples give the same bytes. (Plain tarfile: webdataset's own
    TarWriter would import torch into every build worker, which cost more than the build.)"""

    def __init__(self, fileobj) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)

    def write(self, sample: Mapping[str, Any]) -> None:
        key = sample["__key__"]
        for name in sorted(k for k in sample if not k.startswith("_")):
            data = sample[name]
            data = data.encode() if isinstance(data, str) else bytes(data)
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "", ""
            self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


MANIFEST_KEYS = (
    "schema_version",
    "split",
    "config",
    "image",
    "scorer_version",
    "score_names",
    "source_names",
    "candidate_sources",
    "num_candidates",
    "num_samples",
    "shards",
    "traj_stats",
)


def write_manifest(out: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write OUT/manifest.json atomically (its presence marks a complete build)."""
    path = Path(out) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")  # insertion order: candidate_sources order matters
    tmp.replace(path)
    return path


def read_manifest(out: str | Path) -> dict[str, Any]:
    """Load and check OUT/manifest.json; errors name the file and the field."""
    path = Path(out) / MANIFEST_NAME if Path(out).is_dir() else Path(out)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no shard manifest (build the shards with python -m data_prep.build_shards)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"{path}: manifest lacks fields {missing}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {manifest['schema_version']}, this code reads {SCHEMA_VERSION}"
        )
    if tuple(manifest["score_names"]) != SCORE_NAMES:
        raise ValueError(
            f"{path}: field score_names is {manifest['score_names']}, expected {list(SCORE_NAMES)}"
        )
    for i, shard in enumerate(manifest["shards"]):
        for key in ("name", "samples", "sha256"):
            if key not in shard:
                raise ValueError(f"{path}: shards[{i}] lacks field {key!r}")
    return manifest


def shard_paths(out: str | Path, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """Absolute paths of a build's shards in manifest order."""
    manifest = manifest or read_manifest(out)
    root = Path(out) if Path(out).is_dir() else Path(out).parent
    return [str(root / s["name"]) for s in manifest["shards"]]


class TrajStatsAccumulator:
    """Running sums of (x, y, heading) over trajectory poses; mergeable across shards and processes."""

    def __init__(
        self, count: int = 0, total: Sequence[float] = (0, 0, 0), total_sq: Sequence[float] = (0, 0, 0)
    ):
        self.count = int(count)
        self.total = np.asarray(total, dtype=np.float64).copy()
        self.total_sq = np.asarray(total_sq, dtype=np.float64).copy()

    def add(self, poses: np.ndarray) -> None:
        flat = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
        self.count += len(flat)
        self.total += flat.sum(0)
        self.total_sq += (flat**2).sum(0)

    def merge(self, other: TrajStatsAccumulator) -> None:
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total.tolist(), "total_sq": self.total_sq.tolist()}

    def result(self) -> dict[str, Any]:
        """{"mean", "std", "count"} as stored in the manifest's traj_stats."""
        n = max(self.count, 1)
        mean = self.total / n
        std = np.sqrt(np.maximum(self.total_sq / n - mean**2, 0.0))
        return {"mean": mean.tolist(), "std": np.maximum(std, 1e-6).tolist(), "count": self.count}


def write_shard(path: str | Path, samples: Iterable[Sample]) -> dict[str, Any]:
    """Write samples to one shard (deterministic bytes); returns its manifest entry plus
    `stats` (TrajStatsAccumulator state over human + candidate poses)."""
    path = Path(path)
    acc, count = TrajStatsAccumulator(), 0
    with open(path, "wb") as fh, ShardWriter(fh) as writer:
        for sample in samples:
            writer.write(encode_sample(sample))
            acc.add(np.asarray(sample.human, dtype=np.float32))
            acc.add(np.asarray(sample.candidates, dtype=np.float32))
            count += 1
    name = path.name[: -len(".tmp")] if path.name.endswith(".tmp") else path.name
    return {
        "name": name,
        "samples": count,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "stats": acc.state(),
    }


def write_sample_shards(
    out: str | Path, split: str, shards: Iterable[Iterable[Sample]], **fields: Any
) -> dict[str, Any]:
    """Write ready-made samples as a complete build (shards + manifest) without scenes or scorer:
    for tests and benchmarks of the consumers. `fields` override manifest fields."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = [write_shard(out / shard_name(split, i), group) for i, group in enumerate(shards)]
    acc = TrajStatsAccumulator()
    for record in records:
        acc.merge(TrajStatsAccumulator(**record.pop("stats")))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "split": split,
        "config": {},
        "image": {},
        "scorer_version": "none",
        "score_names": list(SCORE_NAMES),
        "source_names": list(SOURCES),
        "candidate_sources": {},
        "num_candidates": None,
        "num_samples": sum(r["samples"] for r in records),
        "shards": records,
        "traj_stats": acc.result(),
        **fields,
    }
    write_manifest(out, manifest)
    return manifest
