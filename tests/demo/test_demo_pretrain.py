"""`python -m vla_dipole.demo --scale pretrained`: the demo's own stage commands, at tiny budgets, on
real shards. The backbone pretrained on the training split is the one BC and every RL stage end with
(frozen, loaded through `model.backbone_init`), each reading it through the feature cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import run_cli
from vla_dipole.demo import cli as demo
from vla_dipole.model.checked_safetensors import load_checked
from vla_dipole.model.policy import BACKBONE_FILE, DipolePolicy


@pytest.mark.slow
def test_every_learner_keeps_the_pretrained_backbone(synthetic_root, tmp_path):
    shards = tmp_path / "shards"
    args = [
        "--data-root",
        str(synthetic_root),
        "--split",
        "train",
        "--out",
        str(shards),
        "--sources",
        "perturb",
    ]
    args += ["--num-candidates", "4", "--history-frames", "4", "--frame-interval", "4", "--limit", "12"]
    run_cli(["-m", "data_prep.build_shards", *args, "--shard-size", "8", "--workers", "1"])
    s = dataclasses.replace(
        demo.SCALES["pretrained"],
        pretrain_steps=3,
        bc_samples=32,
        rl_samples=32,
        round_samples=32,
        round_candidates=2,
    )
    runs, log = tmp_path / "runs", tmp_path / "commands.log"
    demo.pretrain_backbone(s, shards, runs, 0, log, threads=1)
    demo.train_stages(s, shards, runs, 0, log, jobs=2)

    pretrained = load_checked(runs / demo.PRETRAIN / BACKBONE_FILE)
    for name in ["bc", *demo.rl_stages(s, runs)]:
        backbone = DipolePolicy.from_pretrained(runs / name / "policy").backbone.state_dict()
        assert set(backbone) == set(pretrained), name
        moved = [k for k in pretrained if not torch.equal(pretrained[k], backbone[k])]
        assert not moved, (name, moved[:3])
        assert any((runs / name / "feature_cache").iterdir()), name
