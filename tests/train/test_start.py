"""What train.py says before training: `--help`, and a shard / model observation mismatch naming both values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla_dipole.train import main
from vla_dipole.training.config import STAGES, ConfigError

from .conftest import tiny_args

ROOT = Path(__file__).resolve().parents[2]


def test_help_prints_usage_stages_and_schema():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "vla_dipole/train.py", "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("usage: python vla_dipole/train.py") and "Traceback" not in res.stderr
    for stage in STAGES:
        assert f"\n  {stage} " in out
    schema = next(line for line in out.splitlines() if line.startswith("Config schema: "))
    assert Path(schema.split()[2]).is_file() and schema.split()[2].endswith("configs/train/base.yaml")
    assert "openvla-7b" in out and "online" in out


def test_shards_without_the_models_ego_history_fail_at_start(shards, tmp_path):
    args = tiny_args(shards, tmp_path / "run", **{"model.observation.ego_history": 4})
    with pytest.raises(ConfigError, match=r"data.shards.*store 1 history frames.*ego_history=4"):
        main(args)
    assert not (tmp_path / "run" / "checkpoints").exists()
