"""Fixtures of the training area: small scored shards written directly with vla_dipole.data.shard_format
(no scenes, no PDM engine), a reward that is a real function of the candidate (closeness to the human
trajectory), and helpers to run train.py in-process or through `accelerate launch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla_dipole.training.synthetic_shards import write_shards

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs use one intra-op thread, like the launched ranks (--num_cpu_threads_per_process 1):
    on a shared 2-core machine, spinning OpenMP threads make a tiny step tens of times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("train_shards") / "shards")


def tiny_args(shards: Path, out: Path, **overrides: object) -> list[str]:
    """Overrides of a tiny, fast run (global batch 4, micro batch 2, 8 steps)."""
    args = {
        "model": "tiny",
        "data.shards": str(shards),
        "output_dir": str(out),
        "schedule.total_samples": 32,
        "schedule.global_batch": 4,
        "schedule.micro_batch": 2,
        "schedule.warmup_samples": 8,
        "optim.lr": 1e-3,
        "checkpoint.every_samples": 16,
        "logging.progress": False,
        "logging.tensorboard": False,
    }
    args.update(overrides)
    return [f"{k}={v}" for k, v in args.items()]


def run_train(
    args: list[str], launch_config: str | None = None, timeout: int = 600, **popen
) -> subprocess.CompletedProcess:
    """Run train.py as a real process: plain python, or `accelerate launch` with a config."""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "DS_BUILD_OPS": "0",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("ACCELERATE_USE_CPU", None)
    if launch_config:
        cmd = [
            PYTHON,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(REPO / launch_config),
            "--num_cpu_threads_per_process",
            "1",
            str(REPO / "vla_dipole" / "train.py"),
            *args,
        ]
    else:
        cmd = [PYTHON, str(REPO / "vla_dipole" / "train.py"), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **popen)


def losses(out: Path) -> list[float]:
    return [m["loss"] for m in read_jsonl(out / "metrics.jsonl")]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
