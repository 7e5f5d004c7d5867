"""Shared, session-scoped fixtures: one small synthetic NAVSIM world, its scored shards and a tiny
BC checkpoint, built once and reused by every area that needs real data (eval, SLURM, demo).

Each is built with the same public commands a user runs, so they also smoke-test the pipeline.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The official navsim / nuplan-devkit packages are optional extras: plain `pytest` skips the tests that
# need them (marker `navsim`). `make test` installs them and sets REQUIRE_OFFICIAL, under which such a
# skip is a failure: the suite cannot pass while the official judge is silently absent.
REQUIRE_OFFICIAL = "VLA_DIPOLE_REQUIRE_OFFICIAL"
OFFICIAL_WORDS = ("navsim", "nuplan")


def pytest_report_header(config):
    navsim = importlib.util.find_spec("navsim") is not None
    slurm = shutil.which("slurmctld") is not None
    required = os.environ.get(REQUIRE_OFFICIAL) == "1"
    return [f"official navsim importable: {navsim} (required: {required}); local SLURM binaries: {slurm}"]


def pytest_runtest_setup(item):
    """One availability check for every `navsim`-marked test."""
    if item.get_closest_marker("navsim") is None:
        return
    from navsim_adapter.pdm.official import missing_packages

    missing = missing_packages()
    if missing:
        pytest.skip(f"official {', '.join(missing)} not importable (make install-navsim)")


def _fail_official_skip(report) -> None:
    """Under REQUIRE_OFFICIAL, a skip for want of an official package (any test's own check included:
    the reason names navsim or nuplan) becomes a failure naming the reason."""
    if not report.skipped or os.environ.get(REQUIRE_OFFICIAL) != "1":
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(word in reason.lower() for word in OFFICIAL_WORDS):
        report.outcome = "failed"
        report.longrepr = (
            f"{reason}\n{REQUIRE_OFFICIAL}=1 (set by `make test`, which installs the official wheels): "
            "a test that needs them must run, not skip. Plain `pytest` without the extras skips it."
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_official_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_official_skip(outcome.get_result())  # module-level importorskip


def run_cli(args: list[str], cwd: Path = REPO, timeout: float = 900, env: dict | None = None) -> str:
    """Run `python <args>` like a user would; on failure show the tail of its output."""
    proc = subprocess.run(
        [PYTHON, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"`python {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc.stdout


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A 'train' split (4 logs) and a held-out 'test' split (2 logs): 1 camera, small images."""
    root = tmp_path_factory.mktemp("synthetic")
    common = ["--frames", "24", "--image-size", "128x72", "--cameras", "CAM_F0", "--workers", "2"]
    for split, logs, seed in (("train", 4, 0), ("test", 2, 1000)):
        args = ["--out", str(root), "--split", split, "--logs", str(logs), "--seed", str(seed)]
        run_cli(["-m", "data_prep.synthesize", *args, *common])
    return root


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_root, tmp_path_factory) -> Path:
    """Scored shards of the train split (vocabulary + perturbation candidates)."""
    out = tmp_path_factory.mktemp("shards")
    run_cli(
        [
            "-m",
            "data_prep.build_shards",
            "--data-root",
            str(synthetic_root),
            "--split",
            "train",
            "--out",
            str(out),
            "--sources",
            "vocab,perturb",
            "--num-candidates",
            "4",
            "--image-size",
            "64x36",
            "--shard-size",
            "16",
            "--frame-interval",
            "2",
            "--workers",
            "2",
        ]
    )
    return out


@pytest.fixture(scope="session")
def tiny_bc_policy(synthetic_shards, tmp_path_factory) -> Path:
    """A tiny BC checkpoint (save_pretrained dir) trained for a few hundred samples."""
    out = tmp_path_factory.mktemp("bc")
    run_cli(
        [
            "vla_dipole/train.py",
            "stage=bc",
            "model=tiny",
            f"data.shards={synthetic_shards}",
            f"output_dir={out}",
            "schedule.total_samples=256",
            "schedule.global_batch=16",
            "schedule.micro_batch=8",
            "schedule.warmup_samples=32",
            "logging.progress=false",
        ]
    )
    return out / "policy"
