"""Fault injection: damage real files made by the code itself (shards, checkpoints, policy
directories), then run the real CLIs and check what they report and what survives."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_dipole.data import shard_format, shard_io
from vla_dipole.training.indexed_data import _index_tar
from vla_dipole.training.synthetic_shards import write_shards

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "DS_ACCELERATOR": "cpu",
    "DS_BUILD_OPS": "0",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore",
}


def run(
    args: list[str], fsize: int | None = None, timeout: int = 600, **popen
) -> subprocess.CompletedProcess:
    """`python ARGS` in the repo root; `fsize` caps every file the process writes (RLIMIT_FSIZE: a full disk)."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, **ENV}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        **popen,
    )


def train_args(shards: Path, out: Path, **overrides: object) -> list[str]:
    """A tiny BC run: 16 samples, checkpoints every 8."""
    args = {
        "model": "tiny",
        "data.shards": str(shards),
        "output_dir": str(out),
        "schedule.total_samples": 16,
        "schedule.global_batch": 4,
        "schedule.micro_batch": 2,
        "schedule.warmup_samples": 4,
        "checkpoint.every_samples": 8,
        "logging.progress": False,
        "logging.tensorboard": False,
    }
    args.update(overrides)
    return ["vla_dipole/train.py", *[f"{k}={v}" for k, v in args.items()]]


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """A fresh two-shard build (16 samples each) per test: tests damage it."""
    return write_shards(tmp_path / "shards")


def member(shard: Path, index: int, ext: str) -> tuple[str, int, int]:
    """(key, data offset, size) of member `ext` of sample `index` in a shard tar."""
    key, members = _index_tar(str(shard))[index]
    offset, size = members[ext]
    return key, offset, size


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def field_offset(shard: Path, index: int, name: str) -> tuple[str, int]:
    """(key, absolute file offset) of field `name` of arrays.npy in sample `index`."""
    key, offset, size = member(shard, index, shard_format.ARRAYS_MEMBER)
    with open(shard, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    header = 10 + int.from_bytes(data[8:10], "little")
    record = shard_format.load_npy(data)
    return key, offset + header + record.dtype.fields[name][1]


def first_shard(shards: Path) -> Path:
    return Path(shard_io.shard_paths(shards)[0])


def finite_float32(n: int, value: float) -> bytes:
    return np.full(n, value, np.float32).tobytes()
