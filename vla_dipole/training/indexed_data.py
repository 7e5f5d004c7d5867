"""Random access to scored-trajectory shards: the one data path training reads, with its guarantees.

Position: the member offsets of every (uncompressed) tar are indexed once and sample `i` is read
directly, so stream position -> sample is a pure function of (seed, position) (see
`schedule.SampleOrder`) on any number of ranks, and a resume replays nothing.

Integrity: every shard's sha256 is checked against its manifest before training reads it (the
manifest is written after the shard, so any byte changed since, in a JPEG, an array or a header, shows).
A damaged shard is refused with its name (`on_damaged="refuse"`), or left out whole with its samples
counted in `skipped` (`"skip"`; the first undecodable samples are named there). A sample that still
fails to decode at read time raises `SampleFormatError` naming shard, key and member. Decoding is
vla_dipole.data.shard_format's, so the schema stays in one place.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vla_dipole.data import shard_format, shard_io
from vla_dipole.training.config import ON_DAMAGED, ConfigError

_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key / extension split


def shard_dirs(spec: Any) -> list[Path]:
    """`data.shards` (a shard directory with manifest.json, or a list of them) -> directories."""
    if spec is None:
        raise ConfigError(
            "config field 'data.shards': no shards given (set data.shards=DIR, a build_shards output)"
        )
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    dirs = []
    for item in items:
        path = Path(str(item))
        if not (path / shard_io.MANIFEST_NAME).is_file():
            raise ConfigError(
                f"config field 'data.shards': '{path}' is not a shard directory "
                f"(expected {path / shard_io.MANIFEST_NAME}; build it with python -m data_prep.build_shards)"
            )
        dirs.append(path)
    return dirs


class DamagedShardError(ValueError):
    """A shard whose bytes differ from its manifest entry (or that cannot be read); names the shard."""


class IndexedShards(Dataset):
    """Map-style dataset over one or more shard builds; item i -> decoded sample dict (numpy).

    `verify`: check every shard's sha256 against its manifest (parallel reads; about 1 s per GB and
    core). `on_damaged`: "refuse" raises DamagedShardError naming the shard, "skip" leaves it out and
    records it in `skipped` ({shard: {"samples", "reason"}}). `image_frames`: return only the images
    of the last N history frames (the ones the model reads; see `shard_format.decode_sample`).
    """

    def __init__(
        self,
        dirs: Sequence[Path],
        decode_images: bool = True,
        verify: bool = True,
        on_damaged: str = "refuse",
        image_frames: int | None = None,
    ) -> None:
        if on_damaged not in ON_DAMAGED:
            raise ConfigError(
                f"config field 'data.on_damaged': expected one of {ON_DAMAGED}, got {on_damaged!r}"
            )
        self.decode_images = decode_images
        self.image_frames = image_frames
        self.manifests = [shard_io.read_manifest(d) for d in dirs]
        entries: list[tuple[str, dict[str, Any]]] = []
        for d, m in zip(dirs, self.manifests, strict=True):
            for p, entry in zip(shard_io.shard_paths(d, m), m["shards"], strict=True):
                if not Path(p).is_file():
                    raise ConfigError(
                        f"config field 'data.shards': shard {p} listed in {d}/manifest.json is missing"
                    )
                entries.append((p, entry))
        damage = _check_shards(entries) if verify else {}
        self.paths: list[str] = []
        self.skipped: dict[str, dict[str, Any]] = {}
        self.index: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        for path, entry in entries:
            if path in damage:
                reason = damage[path]
                if on_damaged == "refuse":
                    raise DamagedShardError(
                        f"shard {path} is damaged: {reason}. Rebuild it (the same "
                        "python -m data_prep.build_shards command resumes), or train on the intact "
                        "shards with data.on_damaged=skip"
                    )
                self.skipped[path] = {"samples": int(entry["samples"]), "reason": reason}
                continue
            self.paths.append(path)
            shard_id = len(self.paths) - 1
            self.index.extend((shard_id, key, members) for key, members in _index_tar(path))
        if not self.index:
            raise ConfigError(f"config field 'data.shards': no (intact) samples in {[str(d) for d in dirs]}")
        self._handles: dict[int, Any] = {}

    @property
    def num_skipped(self) -> int:
        return sum(v["samples"] for v in self.skipped.values())

    def report(self) -> dict[str, Any]:
        """What training read and left out: for the log line and the run's data_integrity.json."""
        return {
            "samples": len(self.index),
            "skipped_samples": self.num_skipped,
            "skipped_shards": self.skipped,
        }

    def __len__(self) -> int:
        return len(self.index)

    def raw(self, i: int) -> dict[str, Any]:
        shard_id, key, members = self.index[i]
        fh = self._handles.get(shard_id)
        if fh is None:
            fh = self._handles[shard_id] = open(self.paths[shard_id], "rb")  # noqa: SIM115 (kept open)
        raw: dict[str, Any] = {"__key__": key, "__url__": self.paths[shard_id]}
        for ext, (offset, size) in members.items():
            fh.seek(offset)
            raw[ext] = fh.read(size)
        return raw

    def __getitem__(self, i: int) -> dict[str, Any]:
        return shard_format.decode_sample(
            self.raw(int(i)), decode_images=self.decode_images, image_frames=self.image_frames
        )

    def __getstate__(self) -> dict[str, Any]:  # file handles do not cross worker processes
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state


def read_batch(spec: Any, n: int, start: int = 0, **kwargs: Any) -> dict[str, Any]:
    """Samples start .. start+n-1 of shard build(s) `spec` (a directory or a list), collated: for
    tools, benchmarks and tests that want a real batch without a training loop."""
    from vla_dipole.data.collate import collate

    data = IndexedShards(shard_dirs(spec), **kwargs)
    return collate([data[i] for i in range(start, min(start + n, len(data)))])


def _index_tar(path: str) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """(key, {extension: (data offset, size)}) per sample, in tar order."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                m = _KEY.match(info.name)
                if m is None:
                    continue
                samples.setdefault(m.group(1), {})[m.group(2)] = (info.offset_data, info.size)
    except tarfile.TarError as exc:
        raise ConfigError(f"config field 'data.shards': shard {path} is not a readable tar: {exc}") from exc
    return list(samples.items())


def _check_shards(entries: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """{shard path: what is wrong} for shards whose sha256 differs from the manifest entry."""

    def check(item: tuple[str, dict[str, Any]]) -> tuple[str, str | None]:
        path, entry = item
        digest = shard_io.sha256_file(path)
        if digest == entry["sha256"]:
            return path, None
        return (
            path,
            f"sha256 {digest[:16]}.. differs from the manifest's {entry['sha256'][:16]}..{_first_bad(path)}",
        )

    with ThreadPoolExecutor(max_workers=min(8, len(entries) or 1)) as pool:  # hashlib releases the GIL
        return {path: reason for path, reason in pool.map(check, entries) if reason is not None}


def _first_bad(path: str, limit: int = 3) -> str:
    """Name the first undecodable samples of a damaged shard (a damaged JPEG may still decode)."""
    bad = []
    try:
        for key, members in _index_tar(path):
            raw: dict[str, Any] = {"__key__": key, "__url__": path}
            with open(path, "rb") as fh:
                for ext, (offset, size) in members.items():
                    fh.seek(offset)
                    raw[ext] = fh.read(size)
            try:
                shard_format.decode_sample(raw)
            except shard_format.SampleFormatError as exc:
                bad.append(str(exc).split(": ", 1)[-1][:200] + f" (sample {key})")
                if len(bad) >= limit:
                    break
    except ConfigError as exc:
        return f"; {exc}"
    return f"; undecodable: {'; '.join(bad)}" if bad else ""


def record_integrity(out: Path, round_: int, dataset: IndexedShards) -> None:
    """Print what was left out and record it per round in OUT/data_integrity.json (always written)."""
    path = Path(out) / "data_integrity.json"
    records = json.loads(path.read_text()) if path.is_file() else {}
    records[str(round_)] = dataset.report()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True))
    tmp.replace(path)
    if dataset.skipped:
        names = "; ".join(f"{p} ({v['reason']})" for p, v in dataset.skipped.items())
        print(
            f"[train] data: skipped {dataset.num_skipped} of {dataset.num_skipped + len(dataset)} samples "
            f"in {len(dataset.skipped)} damaged shards: {names}",
            flush=True,
        )
