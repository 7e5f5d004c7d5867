"""`python -m navsim_adapter.evaluation.score`, trajectory files, the bench, and the no-navsim error path."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest

from benchmarks import pdm as bench
from navsim_adapter.evaluation import score as cli
from navsim_adapter.pdm import official


def test_cli_scores_human_agent(pdm_world, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert (
        cli.main(
            [
                "--data-root",
                str(pdm_world),
                "--split",
                "pdm",
                "--agent",
                "human",
                "--max-scenes",
                "4",
                "--csv",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "no_at_fault_collisions" in text and "EPDMS" in text
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 5 and rows[-1]["token"] == "average_all_frames"
    assert 0.0 <= float(rows[-1]["score"]) <= 1.0


def test_cli_trajectory_files(pdm_world, tmp_path, capsys):
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    tokens = SceneLoader("pdm", data_root=pdm_world, scene_filter=SceneFilter(max_scenes=3)).tokens
    trajs = np.zeros((3, 2, 8, 3))
    trajs[:, 0, :, 0] = np.arange(1, 9) * 2.0
    trajs[2, 1, 0, 0] = np.nan  # flagged invalid, scored 0
    npz = tmp_path / "preds.npz"
    np.savez(npz, tokens=np.array(tokens), trajectories=trajs)
    out = tmp_path / "scores.csv"
    cli.main(
        [
            "--data-root",
            str(pdm_world),
            "--split",
            "pdm",
            "--trajectories",
            str(npz),
            "--csv",
            str(out),
            "--quiet",
        ]
    )
    assert "candidates per scene: 2" in capsys.readouterr().out
    pkl = tmp_path / "preds.pkl"
    pkl.write_bytes(pickle.dumps({"predictions": [{t: trajs[i, 0]} for i, t in enumerate(tokens)]}))
    with pytest.raises(ValueError, match=r"preds.pkl: not an .npz file.*--pickle-may-execute-code"):
        cli.load_trajectories(pkl)  # a pickle runs code when loaded: never by default
    assert set(cli.load_trajectories(pkl, pickle_may_execute_code=True)) == set(tokens)
    bad = tmp_path / "bad.npz"
    np.savez(bad, tokens=np.array(tokens), trajectories=np.zeros((3, 8, 2)))
    with pytest.raises(ValueError, match=r"bad.npz: trajectory of token .* shape \(8, 2\)"):
        cli.load_trajectories(bad)


def test_bench_runs(capsys):
    bench.main(["--scenes", "2", "--sizes", "1,3", "--official-calls", "0", "--agents", "0,5"])
    out = capsys.readouterr().out
    assert "cand/s" in out and "scaling with agents" in out


def test_missing_official_packages_message(monkeypatch):
    monkeypatch.setattr(official, "missing_packages", lambda: ["navsim", "nuplan-devkit"])
    with pytest.raises(
        ImportError, match=r"needs the official packages navsim, nuplan-devkit.*make install-navsim"
    ):
        official.require_official("reading the NAVSIM metric cache x")
