"""`python vla_dipole/train.py --help` prints the usage, every stage and where the config schema lives."""

import os
import subprocess
import sys
from pathlib import Path

from vla_dipole.train import STAGE_HELP
from vla_dipole.training.config import STAGES

ROOT = Path(__file__).resolve().parents[2]


def test_help_prints_usage_stages_and_schema():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "vla_dipole/train.py", "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("usage: python vla_dipole/train.py") and "Traceback" not in res.stderr
    assert set(STAGE_HELP) == set(STAGES)  # a new stage must be described
    for stage in STAGES:
        assert f"\n  {stage} " in out
    schema = next(line for line in out.splitlines() if line.startswith("Config schema: "))
    assert Path(schema.split()[2]).is_file() and schema.split()[2].endswith("configs/train/base.yaml")
    assert "openvla-7b" in out and "online" in out
