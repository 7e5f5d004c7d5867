"""Fixtures of the evaluation tests: one evaluator run of the shared tiny BC checkpoint on the held-out
synthetic 'test' split, reused by the output, resume and merge tests.

The world, shards and checkpoint are the session fixtures of tests/conftest.py (`synthetic_root`,
`tiny_bc_policy`); the evaluator runs through its CLI entry point `main` in-process (no interpreter
start-up per run), or as a subprocess where a test must kill it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SPLIT = "test"


def eval_command(checkpoint: Path, root: Path, out: Path, *extra: str) -> list[str]:
    """The evaluator command line every test shares (same batching, so runs are comparable)."""
    return [
        sys.executable,
        "-m",
        "navsim_adapter.evaluation.evaluate",
        "--checkpoint",
        str(checkpoint),
        "--data-root",
        str(root),
        "--split",
        SPLIT,
        "--omega",
        "0,1",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--frame-interval",
        "2",
        "--threads",
        "1",
        "--worst-k",
        "1",
        "--out",
        str(out),
        *extra,
    ]


def run_in_process(cmd: list[str]) -> None:
    """The evaluator `main` with the arguments of `cmd` (no interpreter start-up), torch threads restored."""
    import torch

    from navsim_adapter.evaluation import evaluate

    assert cmd[1:3] == ["-m", "navsim_adapter.evaluation.evaluate"], cmd
    threads = torch.get_num_threads()
    try:
        evaluate.main(cmd[3:])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def eval_cmd(tiny_bc_policy, synthetic_root):
    """`eval_cmd(out, *extra)` -> the shared evaluator command writing to `out`."""
    return lambda out, *extra: eval_command(tiny_bc_policy, synthetic_root, out, *extra)


@pytest.fixture(scope="session")
def eval_main():
    """`eval_main(cmd)` runs an `eval_cmd` command line in this process."""
    return run_in_process


@pytest.fixture(scope="session")
def eval_run(eval_cmd, tmp_path_factory) -> Path:
    """Output directory of one uninterrupted evaluator run (omegas 0 and 1, 2 denoising steps)."""
    out = tmp_path_factory.mktemp("eval_run")
    run_in_process(eval_cmd(out))
    return out


@pytest.fixture()
def one_thread():
    """Run in-process policy sampling on one torch thread (fast on a busy CPU), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
