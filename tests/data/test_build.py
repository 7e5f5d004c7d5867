"""End to end on a synthetic split: build scored shards (vocab + perturb, real PDM engine), validate
them, resume an interrupted build byte-identically, and refuse mismatched settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_prep.build_shards import BUILD_DIR, build_shards
from data_prep.validate import main as validate_main
from data_prep.validate import validate
from vla_dipole.data.shard_format import SCORE_NAMES, SOURCES
from vla_dipole.data.shard_io import read_manifest, shard_name
from vla_dipole.training.indexed_data import read_batch

from .conftest import BUILD


@pytest.fixture(scope="module")
def built(split_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "full"
    return out, build_shards(split_root, "unit", out, workers=1, **BUILD)


def test_build_writes_scored_samples_and_manifest(built):
    out, manifest = built
    assert manifest["num_samples"] == 8 and [s["samples"] for s in manifest["shards"]] == [3, 3, 2]
    assert [s["name"] for s in manifest["shards"]] == [shard_name("unit", i) for i in range(3)]
    assert manifest["num_candidates"] == 5 and manifest["candidate_sources"] == {"vocab": 3, "perturb": 2}
    assert manifest["vocabulary"]["size"] >= 3 and manifest["scorer_version"]
    assert manifest["image"]["size"] == [64, 40] and "build_shards(" in manifest["command"]
    assert manifest["traj_stats"]["count"] == 8 * 6 * 8
    batch = read_batch(out, 8)
    assert batch["images"].shape == (8, 2, 40, 64, 3)
    assert batch["candidates"].shape == (8, 5, 8, 3)
    codes = batch["sources"][0].tolist()
    assert codes == [SOURCES.index("vocab")] * 3 + [SOURCES.index("perturb")] * 2
    scores = batch["candidate_scores"].numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    pdms = scores[..., SCORE_NAMES.index("pdms")]
    assert pdms.std() > 0  # candidates are really scored, not constant
    # PDMS = NC * DAC * (weighted mean of EP_v1, TTC, C): bounded by the multipliers, 0 where they are
    col = {n: scores[..., i] for i, n in enumerate(SCORE_NAMES)}
    assert (pdms <= col["nc"] * col["dac"] + 1e-6).all()
    assert (pdms[col["nc"] * col["dac"] == 0] == 0).all()
    assert (col["epdms"] <= col["nc"] * col["dac"] * col["ddc"] * col["tlc"] + 1e-6).all()
    # the logged driver is mostly fine on its own scenes
    assert batch["human_scores"][:, SCORE_NAMES.index("pdms")].mean() > 0.5
    # perturbations stay close to the human; the ego history ends at the current pose
    np.testing.assert_allclose(batch["ego_pose"][:, -1].numpy(), 0.0, atol=1e-5)


def test_validate_passes_and_catches_a_flipped_byte(built, tmp_path, capsys):
    out, manifest = built
    report = validate(out, progress=False)
    assert report.ok, report.problems
    assert report.scenes == 8 and report.candidates == 40 and set(report.per_source) == {"vocab", "perturb"}
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    tar = copy / manifest["shards"][1]["name"]
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF  # inside the first member's payload
    tar.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exit_info:
        validate_main([str(copy)])
    assert exit_info.value.code == 1
    assert f"{tar}: sha256" in capsys.readouterr().out


def test_interrupted_build_resumes_byte_identical_with_more_workers(split_root, built, tmp_path):
    out_full, full = built
    out = tmp_path / "resumed"
    partial = build_shards(
        split_root, "unit", out, workers=1, max_shards=1, **BUILD
    )  # "killed" after one shard
    assert partial["complete"] is False and not (out / "manifest.json").exists()
    first = out / shard_name("unit", 0)
    mtime = first.stat().st_mtime_ns
    (out / (shard_name("unit", 1) + ".tmp")).write_bytes(b"half-written shard of the killed run")
    resumed = build_shards(split_root, "unit", out, workers=2, **BUILD)
    assert first.stat().st_mtime_ns == mtime  # finished shard not rebuilt
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in full["shards"]]
    assert resumed["traj_stats"] == full["traj_stats"]
    assert not list(out.glob("*.tmp"))


def test_resume_with_other_settings_is_refused(split_root, built):
    out, _ = built
    with pytest.raises(ValueError, match=r"other settings \(differences: \['seed'\]\)"):
        build_shards(split_root, "unit", out, workers=1, **{**BUILD, "seed": 6})
    assert json.loads((out / BUILD_DIR / "settings.json").read_text())["seed"] == 5
    assert read_manifest(out)["num_samples"] == 8


def test_policy_source_needs_a_checkpoint(split_root, tmp_path):
    with pytest.raises(ValueError, match="needs --policy"):
        build_shards(
            split_root,
            "unit",
            tmp_path / "p",
            **{**BUILD, "sources": ("perturb", "policy"), "num_candidates": 2},
        )


@pytest.mark.slow
def test_sigkilled_cli_build_resumes_to_the_same_bytes(split_root, built, tmp_path):
    """A real kill: the CLI is SIGKILLed once its first shard is finished, then re-run unchanged."""
    import os
    import signal
    import subprocess
    import sys
    import time

    _, full = built
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "data_prep.build_shards",
        "--data-root",
        str(split_root),
        "--split",
        "unit",
        "--out",
        str(out),
        "--image-size",
        "64x40",
        "--history-frames",
        "2",
        "--sources",
        "vocab:3,perturb:2",
        "--shard-size",
        "3",
        "--limit",
        "8",
        "--seed",
        "5",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / shard_name("unit", 0)).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "build finished before it could be killed"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = read_manifest(out)
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in full["shards"]]
    assert resumed["command"].endswith("--seed 5")


@pytest.mark.slow
def test_policy_source_samples_a_checkpoint(split_root, tmp_path):
    """Source (c): an (untrained) tiny DipolePolicy checkpoint sampled at omega, scored like the rest."""
    from vla_dipole.model.policy import DipolePolicy

    ckpt = tmp_path / "ckpt"
    DipolePolicy.from_config("tiny").save_pretrained(ckpt)
    kw = {**BUILD, "sources": {"perturb": 2, "policy": 3}, "limit": 3}
    manifest = build_shards(
        split_root, "unit", tmp_path / "p", workers=1, policy=ckpt, omega=1.0, policy_steps=2, **kw
    )
    assert manifest["candidate_sources"] == {"perturb": 2, "policy": 3}
    assert manifest["policy"]["omega"] == 1.0
    batch = read_batch(tmp_path / "p", 3)
    assert (batch["sources"][:, 2:] == SOURCES.index("policy")).all()
    assert batch["candidates"].shape == (3, 5, 8, 3)
    # K independent draws per scene, not one draw repeated K times (a round's advantages need contrast)
    policy_cands = batch["candidates"][:, 2:]
    gaps = (policy_cands[:, :, None] - policy_cands[:, None]).abs().amax(dim=(-1, -2))  # [B, K, K]
    assert (gaps + torch.eye(3) * 1e9 > 1e-3).all(), gaps
    assert validate(tmp_path / "p", progress=False).ok
