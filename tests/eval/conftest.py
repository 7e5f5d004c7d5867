"""Fixtures of the evaluation tests: one evaluator run of the shared tiny BC checkpoint on the held-out
synthetic 'test' split, reused by the output, resume and merge tests.

The world, shards and checkpoint are the session fixtures of tests/conftest.py (`synthetic_root`,
`tiny_bc_policy`); everything here runs the real CLIs on them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPLIT = "test"


def eval_command(checkpoint: Path, root: Path, out: Path, *extra: str) -> list[str]:
    """The evaluator command line every test shares (same batching, so runs are comparable)."""
    return [
        sys.executable, "-m", "navsim_adapter.evaluate", "--checkpoint", str(checkpoint), "--data-root", str(root),
        "--split", SPLIT, "--omega", "0,1", "--steps", "2", "--batch-size", "2", "--frame-interval", "2",
        "--threads", "1", "--worst-k", "1", "--out", str(out), *extra,
    ]


def run(cmd: list[str], timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DS_ACCELERATOR": "cpu"})
    if proc.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="session")
def eval_cmd(tiny_bc_policy, synthetic_root):
    """`eval_cmd(out, *extra)` -> the shared evaluator command writing to `out`."""
    return lambda out, *extra: eval_command(tiny_bc_policy, synthetic_root, out, *extra)


@pytest.fixture(scope="session")
def eval_run(eval_cmd, tmp_path_factory) -> Path:
    """Output directory of one uninterrupted evaluator run (omegas 0 and 1, 2 denoising steps)."""
    out = tmp_path_factory.mktemp("eval_run")
    run(eval_cmd(out))
    return out


@pytest.fixture()
def one_thread():
    """Run in-process policy sampling on one torch thread (fast on a busy CPU), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def run_cmd():
    """`run_cmd(cmd)` runs a command from the repo root; on failure the assertion shows its output."""
    return run
