"""The full chain on the synthetic world: real shards (PDM-scored), BC, then DIPOLE from the BC policy
with one online round: the round samples K candidates per scene from the current policy at omega,
scores them, writes shards through data_prep's policy source, and retrains on them. On real logs the
round scores through the offline build's NAVSIM metric cache (checked on a root without JSON maps)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_prep.build_shards import build_shards
from data_prep.synthesize import synthesize
from vla_dipole.data.shard_format import SCORE_NAMES, SOURCES
from vla_dipole.data.shard_io import read_manifest
from vla_dipole.train import main
from vla_dipole.training.indexed_data import IndexedShards
from vla_dipole.training.online import round_settings, run_online_round

from .conftest import read_jsonl, tiny_args


@pytest.mark.slow
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
    assert sorted(p.name for p in (out / "round-01").iterdir()) == ["shards"]  # the policy stays in memory
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [(m["round"], m["step"]) for m in metrics] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(0.0 <= m["reward_mean"] <= 1.0 and 0.0 < m["w_pos_mean"] < 1.0 for m in metrics)
    replay = IndexedShards([out / "round-01" / "shards"], decode_images=False)
    assert all((replay[i]["sources"] == SOURCES.index("policy")).all() for i in range(len(replay)))
    # the K samples of a scene are different trajectories with different scores: the round has contrast
    for i in range(len(replay)):
        cands = replay[i]["candidates"]
        assert len({c.tobytes() for c in cands}) == len(cands), f"scene {i}: repeated policy samples"
    pdms = SCORE_NAMES.index("pdms")
    assert any(np.ptp(replay[i]["candidate_scores"][:, pdms]) > 0 for i in range(len(replay)))
    assert (out / "policy" / "heads.safetensors").is_file()


def test_round_settings_are_the_offline_builds_with_the_policy_source(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from data_prep.build_shards import BuildSettings

    offline = BuildSettings(
        data_root="/data",
        split="trainval",
        cameras=("cam_f0",),
        image_size=(64, 40),
        history_frames=2,
        sources=(("vocab", 4), ("perturb", 4)),
        shard_size=8,
        limit=5,
        seed=0,
        frame_interval=2,
        jpeg_quality=75,
        vocabulary_sha256="abc",
        metric_cache="/cache/navtrain",
        missing_cache="skip",
    )
    dipole = {"samples_per_scene": 6, "omega": 2.0, "num_steps": 4, "round_frame_interval": 1}
    cfg = OmegaConf.create({"seed": 3, "dipole": dipole})
    settings = round_settings({"config": offline.to_json()}, tmp_path, cfg, 2, "label")
    keep = ("data_root", "split", "cameras", "image_size", "history_frames", "shard_size", "limit")
    keep += ("frame_interval", "jpeg_quality", "metric_cache", "missing_cache")
    assert all(getattr(settings, k) == getattr(offline, k) for k in keep)
    sparse = OmegaConf.create({"seed": 3, "dipole": {**dipole, "round_frame_interval": 3}})
    assert round_settings({"config": offline.to_json()}, tmp_path, sparse, 2, "label").frame_interval == 6
    assert settings.sources == (("policy", 6),) and settings.seed == 5 and settings.vocabulary_sha256 is None
    assert settings.policy == {"checkpoint": "label", "omega": 2.0, "num_steps": 4}
    partial = {k: v for k, v in offline.to_json().items() if k != "history_frames"}
    with pytest.raises(
        ValueError, match=r"manifest\.json \(online rounds\): field 'config' lacks \['history_frames'\]"
    ):
        round_settings({"config": partial}, tmp_path, cfg, 1, "label")


def test_online_round_samples_the_in_memory_policy_as_its_export(tmp_path: Path) -> None:
    """No export + reload: the round's candidates are, bit for bit, what the builder samples from the
    checkpoint `export` writes (EMA weights in), and the live training weights are left as they were."""
    import torch
    from accelerate import Accelerator
    from omegaconf import OmegaConf

    from vla_dipole.model.policy import DipolePolicy
    from vla_dipole.training.ema import HeadEMA
    from vla_dipole.training.policy_io import export

    world = tmp_path / "world"
    synthesize(world, "unit", 1, 0, frames_per_log=17, image_size=(96, 54), workers=1, progress=False)
    kw = dict(image_size=(64, 40), shard_size=3, limit=4, workers=1)
    offline = build_shards(world, "unit", tmp_path / "offline", sources=("perturb",), num_candidates=2, **kw)
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    policy = DipolePolicy.from_config("tiny")
    ema = HeadEMA(accelerator, [p for p in policy.parameters() if p.requires_grad], decay=0.5)
    with torch.no_grad():  # live weights move away from the EMA shadow
        for p in policy.head_pos.parameters():
            p.add_(0.05)
    live = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = OmegaConf.create(
        {
            "output_dir": str(tmp_path / "run"),
            "data": {"shards": str(tmp_path / "offline")},
            "dipole": {"samples_per_scene": 3, "omega": 1.0, "num_steps": 2},
            "seed": 0,
            "stage": "dipole",
        }
    )
    out = run_online_round(accelerator, cfg, policy, ema, 1)
    assert sorted(p.name for p in (tmp_path / "run" / "round-01").iterdir()) == ["shards"]
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in live.items())

    export(accelerator, policy, ema, tmp_path / "exported", "dipole")
    build_shards(
        world,
        "unit",
        tmp_path / "ref",
        sources={"policy": 3},
        seed=1,
        policy=tmp_path / "exported",
        omega=1.0,
        policy_steps=2,
        **kw,
    )
    ours = IndexedShards([out], decode_images=False)
    theirs = IndexedShards([tmp_path / "ref"], decode_images=False)
    assert len(ours) == len(theirs) == offline["num_samples"] == 4
    for i in range(len(ours)):
        assert ours[i]["token"] == theirs[i]["token"]
        assert np.array_equal(ours[i]["candidates"], theirs[i]["candidates"])
        assert np.array_equal(ours[i]["candidate_scores"], theirs[i]["candidate_scores"])
    assert read_manifest(out)["policy"]["checkpoint"] == "in-memory policy of online round 1"


@pytest.mark.navsim
def test_online_round_on_cache_backed_shards_scores_through_the_cache(tmp_path: Path) -> None:
    """Offline shards of a root without JSON maps (a real root, to the builder) built with --metric-cache and
    --missing-cache skip: the round must use the same cache and rule, or it could not score at all."""
    if importlib.util.find_spec("navsim") is None:
        pytest.skip("official navsim not installed (make install-navsim); the metric-cache path needs it")
    from accelerate import Accelerator
    from omegaconf import OmegaConf

    from navsim_adapter.pdm.metric_cache import write_split_cache
    from vla_dipole.model.policy import DipolePolicy

    world = tmp_path / "world"
    synthesize(world, "unit", 1, 0, frames_per_log=17, image_size=(96, 54), workers=1, progress=False)
    cache = write_split_cache(world, "unit", tmp_path / "cache")
    dropped = sorted(cache.rglob("metric_cache.pkl"))[0].parent.name
    meta = next((cache / "metadata").glob("*.csv"))
    meta.write_text("".join(ln for ln in meta.read_text().splitlines(True) if f"/{dropped}/" not in ln))
    shutil.rmtree(world / "synthetic_maps")
    offline = tmp_path / "shards"
    kw = dict(image_size=(64, 40), sources=("perturb",), num_candidates=2, shard_size=4, seed=0)
    build_shards(world, "unit", offline, metric_cache=cache, missing_cache="skip", **kw)

    cfg = OmegaConf.create(
        {
            "output_dir": str(tmp_path / "run"),
            "data": {"shards": str(offline)},
            "dipole": {"samples_per_scene": 2, "omega": 1.0, "num_steps": 2},
            "seed": 0,
            "stage": "dipole",
        }
    )
    out = run_online_round(Accelerator(cpu=True), cfg, DipolePolicy.from_config("tiny"), None, 1)
    offline_manifest, manifest = read_manifest(offline), read_manifest(out)
    assert manifest["config"]["metric_cache"] == str(cache.resolve())
    assert manifest["config"]["missing_cache"] == "skip"
    assert manifest["skipped_scenes"] == offline_manifest["skipped_scenes"] == {"not_in_metric_cache": 1}
    assert manifest["candidate_sources"] == {"policy": 2}
    assert _tokens(out) == _tokens(offline) and len(_tokens(out)) == 3 and dropped not in _tokens(out)


def _tokens(shards: Path) -> list[str]:
    rows = IndexedShards([shards], decode_images=False)
    return [rows[i]["token"] for i in range(len(rows))]
