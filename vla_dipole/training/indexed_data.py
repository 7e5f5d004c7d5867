"""Random access to scored-trajectory shards, for exact, world-size independent data positions.

The streaming loader (`vla_dipole.data.make_loader`) splits shards over ranks, which makes the sample
order depend on the world size and a resume depend on replaying the stream. Training instead indexes
the member offsets of every (uncompressed) tar once and reads sample `i` directly, so stream position
-> sample is a pure function of (seed, position) (see `schedule.SampleOrder`) on any number of ranks.
Decoding is data_prep.shard_format's, so the schema stays in one place.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from data_prep import shard_format
from vla_dipole.training.config import ConfigError

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
        if not (path / shard_format.MANIFEST_NAME).is_file():
            raise ConfigError(
                f"config field 'data.shards': '{path}' is not a shard directory "
                f"(expected {path / shard_format.MANIFEST_NAME}; build it with python -m data_prep.build_shards)"
            )
        dirs.append(path)
    return dirs


class IndexedShards(Dataset):
    """Map-style dataset over one or more shard builds; item i -> decoded sample dict (numpy)."""

    def __init__(self, dirs: Sequence[Path], decode_images: bool = True) -> None:
        self.decode_images = decode_images
        self.manifests = [shard_format.read_manifest(d) for d in dirs]
        self.paths: list[str] = []
        for d, m in zip(dirs, self.manifests, strict=True):
            for p in shard_format.shard_paths(d, m):
                if not Path(p).is_file():
                    raise ConfigError(
                        f"config field 'data.shards': shard {p} listed in {d}/manifest.json is missing"
                    )
                self.paths.append(p)
        self.index: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        for shard_id, path in enumerate(self.paths):
            self.index.extend((shard_id, key, members) for key, members in _index_tar(path))
        if not self.index:
            raise ConfigError(f"config field 'data.shards': no samples in {[str(d) for d in dirs]}")
        self._handles: dict[int, Any] = {}

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
        return shard_format.decode_sample(self.raw(int(i)), decode_images=self.decode_images)

    def __getstate__(self) -> dict[str, Any]:  # file handles do not cross worker processes
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state


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
