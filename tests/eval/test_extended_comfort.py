"""Two-frame extended comfort (EC) in the evaluator: previous-frame pairing, known answers, the official
formula, the scorer's own EC, and exactness across resume / chunks / merge."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from navsim_adapter.evaluation import evaluate, report
from navsim_adapter.evaluation.records import latest_records, read_records, scored_records
from navsim_adapter.pdm.metrics import extended_comfort
from navsim_adapter.pdm.simulation import AX, HEADING, NUM_STEPS, STATE_DIM

T = NUM_STEPS + 1


def states(accel: float = 0.0, yaw_rate: float = 0.0, wobble: float = 0.0) -> np.ndarray:
    """[41, 11] states: constant longitudinal accel, heading turning at yaw_rate, optional accel wobble."""
    s = np.zeros((T, STATE_DIM))
    t = np.arange(T) * 0.1
    s[:, HEADING] = yaw_rate * t
    s[:, AX] = accel + wobble * np.sin(2 * np.pi * t)
    return s


def rec(token: str, start: float, log: str = "log_a", row: str = "a@omega=0", **scores) -> dict:
    base = dict(nc=1.0, dac=1.0, ddc=1.0, tlc=1.0, ep=0.5, ttc=1.0, lk=1.0, hc=1.0, ec=None)
    base.update(scores)
    r = {"row": row, "token": token, "valid": True, "error": None, "log_name": log, "start_time": start}
    return {**r, **base, "epdms": report.epdms(base, None)}


def ec_cols(s: np.ndarray) -> np.ndarray:
    return s[..., report.EC_COLUMNS]


def test_known_answers_smooth_pair_is_1_disagreeing_pair_is_0():
    records = [rec("t0", 10.0), rec("t1", 10.5), rec("t2", 11.0), rec("t3", 11.5)]
    smooth = ec_cols(states(accel=0.5))
    st = {
        ("a@omega=0", "t0"): smooth,
        ("a@omega=0", "t1"): smooth,  # same plan half a second later: comfortable
        ("a@omega=0", "t2"): ec_cols(states(accel=-3.0, yaw_rate=0.4, wobble=2.0)),  # abrupt change
        ("a@omega=0", "t3"): ec_cols(states(accel=-3.0, yaw_rate=0.4, wobble=2.0)),
    }
    out = {r["token"]: r for r in report.add_extended_comfort(records, st)}
    assert out["t0"]["ec"] is None  # first frame of the log: no EC, EPDMS /14
    assert out["t0"]["epdms"] == pytest.approx((5 * 0.5 + 5 + 2 + 2) / 14)
    assert out["t1"]["ec"] == 1.0
    assert out["t1"]["epdms"] == pytest.approx((5 * 0.5 + 5 + 2 + 2 + 2) / 16)
    assert out["t2"]["ec"] == 0.0
    assert out["t2"]["epdms"] == pytest.approx((5 * 0.5 + 5 + 2 + 2) / 16)
    assert records[2]["ec"] is None  # the inputs are not modified


def test_previous_frame_is_the_same_row_and_log_within_055s():
    records = [
        rec("a0", 1.0),
        rec("a1", 1.5),
        rec("a2", 2.5),  # 1.0 s after a1: not adjacent (e.g. --frame-interval 2)
        rec("b0", 1.9, log="log_b"),
        rec("b1", 2.4, log="log_b"),
        rec("a1", 1.5, row="other"),
        {**rec("a3", 3.0), "valid": False},
        rec("a4", 3.5),  # its predecessor a3 is invalid: no EC
        {**rec("s0", 4.0), "start_time": None},  # synthetic frame: never paired
    ]
    prev = report.previous_frames(records)
    assert {k: v[0] for k, v in prev.items()} == {("a@omega=0", "a1"): "a0", ("a@omega=0", "b1"): "b0"}
    assert prev[("a@omega=0", "a1")][1] == pytest.approx(0.5)


def test_stored_columns_give_the_scorers_ec_and_epdms(synthetic_root):
    """Human rows of two adjacent frames: EC via stored columns == score(prev_simulated_states=...)."""
    from navsim_adapter.pdm import build_context, score
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    loader = SceneLoader(
        "test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1, max_scenes=2)
    )
    scenes = [loader.get_scene(t) for t in loader.tokens]
    ctxs = [build_context(s) for s in scenes]
    traj = [s.get_future_trajectory(8)[None, None].astype(np.float64) for s in scenes]
    first = score(ctxs[:1], traj[0])
    second = score(ctxs[1:], traj[1], prev_simulated_states=first.simulated_states)
    plain = score(ctxs[1:], traj[1])
    records = []
    for scene, ctx, res in ((scenes[0], ctxs[0], first), (scenes[1], ctxs[1], plain)):
        records += scored_records(scene, ctx, ["human"], res, 0, np.zeros((1, 1, 8, 3)))
    st = {
        ("human", s.token): ec_cols(r.simulated_states[0, 0])
        for s, r in ((scenes[0], first), (scenes[1], plain))
    }
    out = report.add_extended_comfort(records, st)
    assert not math.isnan(second.ec[0, 0])
    assert out[1]["ec"] == second.ec[0, 0]
    assert out[1]["epdms"] == pytest.approx(second.epdms[0, 0], abs=1e-12)
    assert out[0]["ec"] is None and out[0]["epdms"] == first.epdms[0, 0]


@pytest.mark.navsim
def test_matches_official_two_frame_extended_comfort():
    pytest.importorskip("nuplan", reason="nuplan-devkit missing (make install-navsim)")
    comfort = pytest.importorskip(
        "navsim.planning.simulation.planner.pdm_planner.scoring.pdm_comfort_metrics",
        reason="official navsim not installed (make install-navsim)",
    )
    rng = np.random.default_rng(0)
    k = 64
    scale = np.repeat([0.0, 0.05, 0.3, 1.0], k // 4)[:, None]
    base = np.stack([states(accel=a, yaw_rate=y) for a, y in rng.uniform(-1, 1, (k, 2))])
    cur = base + rng.normal(size=base.shape) * scale[..., None]
    prev = base + rng.normal(size=base.shape) * scale[..., None]
    ours = extended_comfort(cur, prev, overlap_start=5)
    official = comfort.ego_is_two_frame_extended_comfort(cur[:, :-5], prev[:, 5:], np.arange(T - 5) * 0.1)
    np.testing.assert_array_equal(ours, official.astype(np.float64))
    assert 0 < ours.sum() < k  # both outcomes exercised


@pytest.fixture(scope="module")
def ec_run(eval_cmd, eval_main, tmp_path_factory):
    """Every frame (navtest style) of the first scenes: adjacent tokens 0.5 s apart, 3 batches of 2."""
    out = tmp_path_factory.mktemp("ec_run")
    eval_main(eval_cmd(out, "--frame-interval", "1", "--max-scenes", "5", "--worst-k", "0"))
    return out


def read_v2(path):
    with path.open() as f:
        return {r["token"]: r for r in csv.DictReader(f)}


def test_evaluator_fills_ec_for_every_frame_with_a_previous_one(ec_run):
    rows = read_v2(ec_run / "human_v2.csv")
    tokens = [t for t in rows if t != "average_all_frames"]
    records = latest_records(read_records([ec_run / "records.jsonl"]))
    prev = report.previous_frames(records)
    assert len(tokens) == 5 and len(report.load_states([ec_run])) == 5 * 4
    with_prev = [t for t in tokens if ("human", t) in prev]
    assert len(with_prev) >= 3
    for t in tokens:
        ec = rows[t]["two_frame_extended_comfort"]
        assert (ec != "") == (t in with_prev), t
        raw = next(r for r in records if r["row"] == "human" and r["token"] == t)
        expect = report.epdms(raw, float(ec) if ec else None)
        assert float(rows[t]["score"]) == pytest.approx(expect, abs=1e-6)
    n_ec = 4 * len(with_prev)  # every row of a token with a previous frame
    assert f"EC available for {n_ec} of 20 valid" in (ec_run / "summary.md").read_text()


def test_chunks_and_merge_keep_ec_exact(ec_run, eval_cmd, eval_main, tmp_path):
    """The chunk boundary splits adjacent frames: EC across it comes back in the merge, bit for bit."""
    chunks = [tmp_path / f"chunk{i}" for i in range(2)]
    for i, out in enumerate(chunks):
        eval_main(
            eval_cmd(out, "--frame-interval", "1", "--max-scenes", "5", "--worst-k", "0", "--chunk", f"{i}/2")
        )
    merged = tmp_path / "merged"
    evaluate.main(["--merge", *map(str, chunks), "--out", str(merged)])
    for stem in ("constant_velocity", "human", "dipole_omega0", "dipole_omega1"):
        name = f"{stem}_v2.csv"
        assert (merged / name).read_text() == (ec_run / name).read_text(), name
    # alone, chunk 1 lacks its first frame's predecessor
    first = min(read_records([chunks[1] / "records.jsonl"]), key=lambda r: r["start_time"])
    assert read_v2(chunks[1] / "human_v2.csv")[first["token"]]["two_frame_extended_comfort"] == ""


def test_resume_after_losing_the_last_batch_records_keeps_ec_exact(ec_run, eval_cmd, eval_main, tmp_path):
    """A kill after a batch's states were written but before its records: the rerun rewrites both."""
    import shutil

    out = tmp_path / "resumed"
    shutil.copytree(ec_run, out)
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text("".join(lines[: len(lines) - 4]))  # last batch = 1 token x 4 rows
    for p in out.glob("*_v2.csv"):
        p.unlink()
    eval_main(eval_cmd(out, "--frame-interval", "1", "--max-scenes", "5", "--worst-k", "0"))
    for stem in ("human", "dipole_omega1"):
        assert (out / f"{stem}_v2.csv").read_text() == (ec_run / f"{stem}_v2.csv").read_text(), stem
