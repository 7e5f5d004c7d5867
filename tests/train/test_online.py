"""The full chain on the synthetic world: real shards (PDM-scored), BC, then DIPOLE from the BC policy
with one online round: the round samples K candidates per scene from the current policy at omega,
scores them, writes shards through data_prep's policy source, and retrains on them. On real logs the
round scores through the offline build's NAVSIM metric cache (checked on a root without JSON maps)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from data_prep.build_shards import build_shards
from data_prep.synthesize import synthesize
from vla_dipole.data.shard_format import SOURCES
from vla_dipole.data.shard_io import read_manifest
from vla_dipole.train import main
from vla_dipole.training.indexed_data import IndexedShards
from vla_dipole.training.online import _build_args, run_online_round

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
    assert (out / "round-01" / "policy" / "heads.safetensors").is_file()  # the reference policy of the round
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [(m["round"], m["step"]) for m in metrics] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(0.0 <= m["reward_mean"] <= 1.0 and 0.0 < m["w_pos_mean"] < 1.0 for m in metrics)
    replay = IndexedShards([out / "round-01" / "shards"], decode_images=False)
    assert all((replay[i]["sources"] == SOURCES.index("policy")).all() for i in range(len(replay)))
    assert (out / "policy" / "heads.safetensors").is_file()


def test_build_args_carry_the_metric_cache(tmp_path: Path) -> None:
    config = {"cameras": ["cam_f0"], "image_size": [64, 40], "history_frames": 1, "frame_interval": 2}
    manifest = {"data_root": "/data", "split": "trainval", "config": config}
    assert _build_args(manifest, tmp_path)["metric_cache"] is None  # a synthetic build: scored from maps
    config.update(metric_cache="/cache/navtrain", missing_cache="skip", limit=5)
    args = _build_args(manifest, tmp_path)
    assert (args["metric_cache"], args["missing_cache"], args["limit"]) == ("/cache/navtrain", "skip", 5)
    assert args["frame_interval"] == 2 and args["split"] == "trainval"
    with pytest.raises(ValueError, match=r"manifest\.json: online rounds need fields .*history_frames"):
        _build_args({"data_root": "/data", "split": "x", "config": {"cameras": ["cam_f0"]}}, tmp_path)


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
