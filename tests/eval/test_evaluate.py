"""End-to-end evaluator runs on the synthetic test split: outputs, NAVSIM names, resume, bad scenes, chunks."""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from navsim_adapter.evaluation import evaluate
from navsim_adapter.evaluation.records import read_records
from navsim_adapter.scene_loader import SceneFilter, SceneLoader

ROWS = ["constant_velocity", "human", "dipole@omega=0", "dipole@omega=1"]
CSV_STEMS = ["constant_velocity", "human", "dipole_omega0", "dipole_omega1"]
# NAVSIM's csv headers (v1 = navsim 1.1's run_pdm_score, v2 = run_pdm_score_one_stage's PDMResults columns + EC)
NAVSIM_V1 = [
    "token",
    "valid",
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "ego_progress",
    "time_to_collision_within_bound",
    "comfort",
    "driving_direction_compliance",
    "score",
]
NAVSIM_V2 = [
    "token",
    "valid",
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "driving_direction_compliance",
    "traffic_light_compliance",
    "ego_progress",
    "time_to_collision_within_bound",
    "lane_keeping",
    "history_comfort",
    "two_frame_extended_comfort",
    "score",
]


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def num(cell: str) -> float:
    return float(cell) if cell else math.nan


def test_outputs_have_navsim_columns_and_every_token(eval_run, synthetic_root):
    tokens = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=2)).tokens
    assert len(tokens) >= 6
    for stem in CSV_STEMS:
        for version, header, average in (
            ("v1", NAVSIM_V1, "average"),
            ("v2", NAVSIM_V2, "average_all_frames"),
        ):
            path = eval_run / f"{stem}_{version}.csv"
            with path.open() as f:
                assert next(csv.reader(f)) == header, path
            rows = read_csv(path)
            assert [r["token"] for r in rows[:-1]] == sorted(tokens)
            assert rows[-1]["token"] == average
            valid = [r for r in rows[:-1] if r["valid"] == "True"]
            assert valid, f"{path}: no valid token"
            for col in header[2:]:  # the average row is the mean over valid tokens
                vals = [num(r[col]) for r in valid if r[col]]
                if vals:
                    assert num(rows[-1][col]) == pytest.approx(np.mean(vals), abs=2e-6), (path, col)


def test_v1_score_is_pdms_of_its_subscores(eval_run):
    for stem in CSV_STEMS:
        for r in read_csv(eval_run / f"{stem}_v1.csv")[:-1]:
            nc, dac, ep, ttc, c = (num(r[k]) for k in NAVSIM_V1[2:7])
            assert num(r["score"]) == pytest.approx(nc * dac * (5 * ep + 5 * ttc + 2 * c) / 12, abs=1e-5)


def test_records_once_per_row_and_token_with_trajectories(eval_run):
    records = read_records([eval_run / "records.jsonl"])
    keys = [(r["row"], r["token"]) for r in records]
    assert len(keys) == len(set(keys))
    assert {r["row"] for r in records} == set(ROWS)
    tokens = {r["token"] for r in records}
    assert len(records) == len(ROWS) * len(tokens)
    for r in records:
        traj = np.asarray(r["trajectory"])
        assert traj.shape == (8, 3) and np.isfinite(traj).all()
    # omega 0 and omega 1 sample from the same initial noise but different eps: different plans
    by = {(r["row"], r["token"]): np.asarray(r["trajectory"]) for r in records}
    assert any(not np.allclose(by["dipole@omega=0", t], by["dipole@omega=1", t]) for t in tokens)


def test_summary_table_plot_and_worst_pictures(eval_run):
    text = (eval_run / "summary.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| agent"))
    for col in ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "C", "LK", "HC", "EC", "PDMS", "EPDMS"):
        assert f" {col} |" in header
    for row in ROWS:
        assert f"| {row} |" in text
    table = json.loads((eval_run / "summary.json").read_text())
    human = read_csv(eval_run / "human_v1.csv")[-1]
    assert table["human"]["pdms"] == pytest.approx(100 * num(human["score"]), abs=1e-3)
    assert "steps" in json.loads((eval_run / "settings.json").read_text())
    assert (eval_run / "omega_curve.png").read_bytes()[:4] == b"\x89PNG"
    worst = list((eval_run / "worst").glob("*.png"))
    assert len(worst) == 1 and worst[0].stem in {
        r["token"] for r in read_records([eval_run / "records.jsonl"])
    }


def test_resume_after_sigkill_matches_uninterrupted_run(eval_cmd, eval_run, eval_main, tmp_path):
    out = tmp_path / "killed"
    records = out / "records.jsonl"
    proc = subprocess.Popen(
        eval_cmd(out),
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if records.is_file() and records.read_text().count("\n") >= len(ROWS):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the evaluator finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    partial = read_records([records])
    full = read_records([eval_run / "records.jsonl"])
    assert 0 < len(partial) < len(full), "kill did not interrupt the run"

    eval_main(eval_cmd(out))  # the same command again (in-process: no second interpreter start-up)
    resumed = read_records([records])
    keys = [(r["row"], r["token"]) for r in resumed]
    assert len(keys) == len(set(keys)) == len(full)  # finished tokens were skipped, not redone
    assert resumed[: len(partial)] == partial
    for stem in CSV_STEMS:
        for version in ("v1", "v2"):
            name = f"{stem}_{version}.csv"
            assert (out / name).read_text() == (eval_run / name).read_text(), name


def test_missing_camera_file_is_recorded_invalid(tiny_bc_policy, synthetic_root, tmp_path, one_thread):
    root = tmp_path / "data"
    for sub in ("navsim_logs/test", "sensor_blobs/test", "synthetic_maps"):
        shutil.copytree(synthetic_root / sub, root / sub)
    loader = SceneLoader("test", data_root=root, scene_filter=SceneFilter(frame_interval=2, max_scenes=3))
    bad = loader.tokens[1]
    image = loader.get_scene(bad).current_frame.cameras.cam_f0.camera_path
    Path(image).unlink()

    out = tmp_path / "out"
    evaluate.main(
        [
            "--checkpoint",
            str(tiny_bc_policy),
            "--data-root",
            str(root),
            "--split",
            "test",
            "--omega",
            "0",
            "--steps",
            "2",
            "--batch-size",
            "3",
            "--frame-interval",
            "2",
            "--max-scenes",
            "3",
            "--worst-k",
            "0",
            "--out",
            str(out),
        ]
    )
    records = read_records([out / "records.jsonl"])
    assert {r["token"] for r in records} == set(loader.tokens)
    for r in records:
        if r["token"] == bad:
            assert not r["valid"] and "CAM_F0" in r["error"] and Path(image).name in r["error"], r
        else:
            assert r["valid"], r
    rows = {r["token"]: r for r in read_csv(out / "dipole_omega0_v1.csv")}
    assert rows[bad]["valid"] == "False" and rows[bad]["score"] == ""
    assert rows["average"]["valid"] == "False" and rows["average"]["score"] != ""
    assert bad in (out / "summary.md").read_text()


def test_chunks_merge_into_the_full_report(eval_run, eval_cmd, eval_main, tmp_path):
    chunks = [tmp_path / f"chunk{i}" for i in range(2)]
    for i, out in enumerate(chunks):
        eval_main(eval_cmd(out, "--chunk", f"{i}/2", "--worst-k", "0"))
    sizes = [len({r["token"] for r in read_records([c / "records.jsonl"])}) for c in chunks]
    assert all(s > 0 for s in sizes)
    merged = tmp_path / "merged"
    evaluate.main(["--merge", *map(str, chunks), "--out", str(merged)])
    for stem in CSV_STEMS:
        for version in ("v1", "v2"):
            name = f"{stem}_{version}.csv"
            assert (merged / name).read_text() == (eval_run / name).read_text(), name


def test_cli_rejects_bad_arguments(capsys):
    for argv, message in (
        (["--split", "x", "--omega", "1,a"], "--omega"),
        (["--split", "x", "--chunk", "2/2"], "0 <= i < N"),
        (["--split", "x", "--best-of", "0"], ">= 1"),
    ):
        with pytest.raises(SystemExit):
            evaluate.main(argv)
        assert message in capsys.readouterr().err


@pytest.mark.navsim
def test_v2_columns_are_the_ones_official_navsim_writes(eval_run):
    """run_pdm_score_one_stage keeps PDMResults' metric fields + two_frame_extended_comfort + score."""
    from dataclasses import fields

    dataclasses = pytest.importorskip("navsim.common.dataclasses", reason="official navsim not installed")
    internal = {"multiplicative_metrics_prod", "weighted_metrics", "weighted_metrics_array", "pdm_score"}
    official = [f.name for f in fields(dataclasses.PDMResults) if f.name not in internal]
    with (eval_run / "human_v2.csv").open() as f:
        header = next(csv.reader(f))
    assert header[:2] == ["token", "valid"]
    assert sorted(header[2:]) == sorted([*official, "two_frame_extended_comfort", "score"])
