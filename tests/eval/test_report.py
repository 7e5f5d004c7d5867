"""Report building blocks on hand-made records: NAVSIM csv layout, averages, resume bookkeeping, chunks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from navsim_adapter.evaluation import report
from navsim_adapter.evaluation.records import RecordWriter, chunk_tokens, latest_records
from navsim_adapter.pdm.columns import SCORE_NAMES
from vla_dipole.inference import consensus_scores, observation_seed


def rec(row: str, token: str, pdms: float | None, valid: bool = True) -> dict:
    scores = {k: (pdms if valid else None) for k in SCORE_NAMES}
    scores["ec"] = None
    return {"row": row, "token": token, "valid": valid, "error": None if valid else "boom", **scores}


def test_csv_average_is_over_valid_tokens_and_invalid_rows_stay_empty(tmp_path):
    records = [
        rec("a@omega=1", "t1", 1.0),
        rec("a@omega=1", "t2", 0.5),
        rec("a@omega=1", "t3", None, valid=False),
    ]
    paths = report.write_csvs(records, tmp_path)
    assert sorted(p.name for p in paths) == ["a_omega1_v1.csv", "a_omega1_v2.csv"]
    with (tmp_path / "a_omega1_v1.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["token"] for r in rows] == ["t1", "t2", "t3", "average"]
    assert rows[2]["valid"] == "False" and rows[2]["score"] == ""
    assert float(rows[3]["score"]) == pytest.approx(0.75)
    assert rows[3]["valid"] == "False"  # like NAVSIM: the average row is valid only if every token was
    with (tmp_path / "a_omega1_v2.csv").open() as f:
        v2 = list(csv.DictReader(f))
    assert v2[-1]["token"] == "average_all_frames" and v2[-1]["two_frame_extended_comfort"] == ""


def test_summary_rows_ordered_and_scaled():
    records = [
        rec("dipole@omega=2", "t", 0.9),
        rec("dipole@omega=0.5", "t", 0.8),
        rec("human", "t", 1.0),
        rec("constant_velocity", "t", 0.2),
        rec("bc@omega=0", "t", 0.7),
    ]
    table = report.summarize(records)
    assert table["human"]["pdms"] == pytest.approx(100.0)
    assert table["dipole@omega=2"]["n_valid"] == 1
    assert report.row_order(table) == [
        "constant_velocity",
        "human",
        "bc@omega=0",
        "dipole@omega=0.5",
        "dipole@omega=2",
    ]
    md = report.markdown_table(table)
    assert md.splitlines()[2].startswith("| constant_velocity | ") and "| 20.0 |" in md.splitlines()[2]


def test_omega_plot_written(tmp_path):
    table = report.summarize(
        [rec(report.omega_row("d", w), "t", 0.1 * w) for w in (0, 1, 2)] + [rec("human", "t", 1)]
    )
    assert report.plot_omega_curve(table, tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_latest_record_wins():
    out = latest_records([rec("a", "t", 0.1), rec("b", "t", 0.2), rec("a", "t", 0.3)])
    assert sorted((r["row"], r["pdms"]) for r in out) == [("a", 0.3), ("b", 0.2)]


def test_record_writer_drops_torn_tail_and_counts_complete_tokens(tmp_path):
    path = tmp_path / "records.jsonl"
    w = RecordWriter(path)
    w.write([rec("a", "t1", 1.0), rec("b", "t1", 1.0), rec("a", "t2", 1.0)])
    assert w.done_tokens(["a", "b"]) == {"t1"}  # t2 lacks row b: evaluated again
    with path.open("a") as f:
        f.write('{"row": "b", "tok')  # killed mid-write
    w = RecordWriter(path)
    w.write([rec("b", "t2", 0.5)])
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    assert w.done_tokens(["a", "b"]) == {"t1", "t2"}


@pytest.mark.parametrize("n_tokens", [1, 7, 12, 13])
@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_chunks_partition_tokens_on_batch_boundaries(n_tokens, parts):
    tokens = [f"t{i:02d}" for i in range(n_tokens)]
    chunks = [chunk_tokens(tokens, (i, parts), align=4) for i in range(parts)]
    assert sum(chunks, []) == tokens
    starts = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    assert all(s % 4 == 0 or s == n_tokens for s in starts)


def test_consensus_prefers_the_central_sample():
    base = np.zeros((8, 3))
    base[:, 0] = np.arange(1, 9)
    samples = np.stack([base + [0, dy, 0] for dy in (-1.0, 0.1, 1.0, 6.0)])[None]  # [1, 4, 8, 3]
    assert consensus_scores(samples).argmax(axis=1).tolist() == [1]


def test_observation_seeds_are_stable_dtype_blind_and_distinct():
    rng = np.random.default_rng(0)
    obs = {
        "images": rng.integers(0, 255, (1, 4, 6, 3), dtype=np.uint8),
        "ego_pose": np.zeros((1, 3), np.float32),
        "ego_velocity": np.array([[3.0, 0.1]], np.float32),
        "ego_acceleration": np.zeros((1, 2), np.float32),
        "driving_command": np.array([[0, 1, 0, 0]], np.float32),
    }
    seed = observation_seed(0, obs)
    assert observation_seed(0, {**obs, "token": "x", "ego_pose": obs["ego_pose"].astype(np.float64)}) == seed
    assert observation_seed(0, {**obs, "ego_pose": -obs["ego_pose"]}) == seed  # -0.0 is 0.0
    images = obs["images"].copy()
    images[0, 0, 0, 0] ^= 1
    others = {
        observation_seed(1, obs),
        observation_seed(0, {**obs, "images": images}),
        observation_seed(0, {**obs, "ego_velocity": obs["ego_velocity"] * 1.001}),
        observation_seed(0, {**obs, "driving_command": obs["driving_command"][:, ::-1]}),
    }
    assert seed not in others and len(others) == 4
