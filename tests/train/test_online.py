"""The full chain on the synthetic world: real shards (PDM-scored), BC, then DIPOLE from the BC policy
with one online round: the round samples K candidates per scene from the current policy at omega,
scores them, writes shards through data_prep's policy source, and retrains on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.build_shards import build_shards
from data_prep.shard_format import SOURCES, read_manifest
from data_prep.synthesize import synthesize
from vla_dipole.train import main
from vla_dipole.training.indexed_data import IndexedShards

from .conftest import read_jsonl, tiny_args

pytestmark = pytest.mark.slow


def test_bc_then_dipole_with_one_online_round(tmp_path: Path) -> None:
    synthesize(
        tmp_path / "world", "unit", 2, 0, frames_per_log=18, image_size=(96, 54), workers=1, progress=False
    )
    shards = tmp_path / "shards"
    build_shards(
        tmp_path / "world",
        "unit",
        shards,
        cameras=("cam_f0",),
        image_size=(64, 40),
        history_frames=1,
        sources=("perturb",),
        num_candidates=4,
        shard_size=4,
        limit=6,
        seed=0,
        workers=1,
    )

    bc = tmp_path / "bc"
    main(tiny_args(shards, bc, **{"schedule.total_samples": 8}))
    out = tmp_path / "dipole"
    main(
        tiny_args(
            shards,
            out,
            stage="dipole",
            init_from=str(bc / "policy"),
            **{
                "schedule.total_samples": 8,
                "dipole.rounds": 1,
                "dipole.samples_per_scene": 3,
                "dipole.omega": 1.0,
                "dipole.num_steps": 2,
                "dipole.round_samples": 8,
            },
        )
    )

    round_manifest = read_manifest(out / "round-01" / "shards")
    assert round_manifest["num_samples"] == 6 and round_manifest["candidate_sources"] == {"policy": 3}
    assert round_manifest["policy"]["omega"] == 1.0
    assert (out / "round-01" / "policy" / "heads.safetensors").is_file()  # the reference policy of the round
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [(m["round"], m["step"]) for m in metrics] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(0.0 <= m["reward_mean"] <= 1.0 and 0.0 < m["w_pos_mean"] < 1.0 for m in metrics)
    replay = IndexedShards([out / "round-01" / "shards"], decode_images=False)
    assert all((replay[i]["sources"] == SOURCES.index("policy")).all() for i in range(len(replay)))
    assert (out / "policy" / "heads.safetensors").is_file()
