"""navsim's own evaluation scripts as the judge: run them on a synthetic split with DipoleAgent,
constant velocity and the human agent, and require our evaluator's per-token numbers to match.

- v2 one-stage (navtest EPDMS): navsim 2.0.0 `run_pdm_score_one_stage`, log-replay traffic, EC from
  adjacent frames. The metric cache is written with navsim's classes from the same scenes.
- v1 (navtest PDMS): navsim 1.1 `run_pdm_score`, from its install folder put first on the path of a
  subprocess (`make install-navsim` installs it into `.venv/navsim-v1.1`; `NAVSIM_V1_PATH` overrides),
  on a v1.1 metric cache written with navsim 1.1's classes in such a subprocess.
- v2 two-stage (navhard EPDMS): navsim 2.0.0 `run_pdm_score` on a navhard_two_stage-format split written
  by `navsim_adapter.evaluation.two_stage` (synthetic second-stage scenes, stage mapping), log-replay traffic in
  both stages; compared with `navsim_adapter.evaluation.two_stage.score_two_stage` (per token and aggregates).

The human agent is privileged: navsim builds the whole Scene for it, whose constructor opens the
nuPlan map of the log, and navsim's loader of synthetic (second-stage) scenes opens it for every agent.
The synthetic world has no nuPlan map and log-replay scoring reads none (the human agent returns the
logged future), so those runs replace navsim's map loader with one returning None.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from navsim_adapter.evaluation.report import csv_name, omega_row
from navsim_adapter.pdm.columns import V1_COLUMNS, V2_COLUMNS

pytestmark = pytest.mark.navsim

SPLIT = "test"
HYDRA_SEARCHPATH = (
    "hydra.searchpath=[pkg://navsim.planning.script.config.common,pkg://navsim_adapter.evaluation.config]"
)
# navsim's Scene opens the nuPlan map of the log; log-replay scoring never reads it (see module doc)
NO_MAP = "import navsim.common.dataclasses as d; d.Scene._build_map_api = classmethod(lambda cls, name: None)"
# (navsim agent overrides, our evaluator's row)
AGENTS = {
    "dipole": (["agent=dipole_agent", "agent.omega=1.0", "agent.num_steps=2"], omega_row("dipole", 1.0)),
    "constant_velocity": (["agent=constant_velocity_agent"], "constant_velocity"),
    "human": (["agent=human_agent"], "human"),
}


def official_overrides(agent: str, checkpoint: Path) -> list[str]:
    overrides, _ = AGENTS[agent]
    return [*overrides, f"agent.checkpoint_path={checkpoint}"] if agent == "dipole" else overrides


@pytest.fixture(scope="module")
def split_cache(synthetic_root, tmp_path_factory) -> Path:
    """A navsim-format metric cache of every frame of the split (adjacent frames: EC is scored)."""
    if importlib.util.find_spec("navsim") is None:
        pytest.skip("official navsim not installed (make install-navsim): its scripts are the judge here")
    from navsim_adapter.pdm.metric_cache import write_split_cache

    return write_split_cache(synthetic_root, SPLIT, tmp_path_factory.mktemp("metric_cache"), frame_interval=1)


def run_navsim_script(module: str, overrides: list[str], env: dict[str, str], preamble: str = "") -> str:
    """`python -m <module> <overrides>` as a user runs it (with `preamble` executed first if given)."""
    launch = (
        ["-m", module]
        if not preamble
        else ["-c", f"{preamble}; import runpy; runpy.run_module({module!r}, run_name='__main__')"]
    )
    proc = subprocess.run(
        [sys.executable, *launch, *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{module} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout + proc.stderr


def one_csv(folder: Path) -> list[dict]:
    paths = sorted(folder.rglob("*.csv"))
    assert len(paths) == 1, f"expected one result csv under {folder}, found {paths}"
    with paths[0].open() as f:
        return list(csv.DictReader(f))


def value(text: str) -> float:
    return math.nan if text in ("", "nan", "NaN", "None") else float(text)


def assert_rows_equal(official: dict, ours: dict, columns, what: str) -> None:
    for col in columns:
        a, b = value(official[col]), value(ours[col])
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-6, (what, col, official[col], ours[col])


@pytest.fixture(scope="module")
def our_one_stage(eval_cmd, eval_main, split_cache, tmp_path_factory) -> Path:
    """Our evaluator on the same split and metric cache (every frame, omega 1, 2 steps)."""
    out = tmp_path_factory.mktemp("ours_one_stage")
    cmd = eval_cmd(out, "--metric-cache", str(split_cache))
    cmd[cmd.index("--frame-interval") + 1] = "1"
    cmd[cmd.index("--omega") + 1] = "1"
    eval_main(cmd)
    return out


@pytest.mark.parametrize("agent", list(AGENTS))
def test_v2_one_stage_script_agrees_with_our_evaluator_per_token(
    agent, tiny_bc_policy, synthetic_root, split_cache, our_one_stage, tmp_path
):
    run_navsim_script(
        "navsim.planning.script.run_pdm_score_one_stage",
        [
            HYDRA_SEARCHPATH,
            *official_overrides(agent, tiny_bc_policy),
            f"train_test_split={SPLIT}",
            "train_test_split.scene_filter.frame_interval=1",
            f"metric_cache_path={split_cache}",
            f"output_dir={tmp_path / 'official'}",
            "experiment_name=judge",
            "worker=sequential",
        ],
        {"OPENSCENE_DATA_ROOT": str(synthetic_root), "NAVSIM_EXP_ROOT": str(tmp_path)},
        preamble=NO_MAP if agent == "human" else "",
    )
    official = {r["token"]: r for r in one_csv(tmp_path / "official")}
    with (our_one_stage / csv_name(AGENTS[agent][1], "v2")).open() as f:
        ours = {r["token"]: r for r in csv.DictReader(f)}
    assert set(official) == set(ours) and len(ours) > 10
    assert all(r["valid"] == "True" for r in official.values())
    columns = list(V2_COLUMNS.values())
    for token in official:  # every token, and NAVSIM's average row (average_all_frames)
        assert_rows_equal(official[token], ours[token], columns, (agent, token))
    with_ec = [t for t, r in official.items() if not math.isnan(value(r["two_frame_extended_comfort"]))]
    assert len(with_ec) >= len(official) - 3  # frames adjacent: EC scored for all but each log's first
    scores = {round(value(r["score"]), 6) for r in official.values()}
    assert agent == "human" or len(scores) > 2, f"{agent}: scores too uniform to tell agents apart: {scores}"


@pytest.fixture(scope="module")
def navsim_v1(split_cache) -> dict[str, str]:
    """Environment of a navsim 1.1 subprocess: its install folder first on PYTHONPATH."""
    folder = Path(os.environ.get("NAVSIM_V1_PATH", Path(sys.prefix) / "navsim-v1.1"))
    if not (folder / "navsim").is_dir():
        pytest.skip(f"navsim 1.1 not installed in {folder} (make install-navsim; or set NAVSIM_V1_PATH)")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="module")
def v1_cache(navsim_v1, synthetic_root, tmp_path_factory) -> Path:
    """A navsim 1.1 metric cache of the frames `eval_run` scores (every second one)."""
    out = tmp_path_factory.mktemp("metric_cache_v1")
    args = ["--data-root", str(synthetic_root), "--split", SPLIT, "--out", str(out), "--frame-interval", "2"]
    run_navsim_script("navsim_adapter.pdm.official_v1", args, navsim_v1)
    return out


@pytest.mark.parametrize("agent", list(AGENTS))
def test_v1_script_agrees_with_our_evaluator_per_token(
    agent, navsim_v1, v1_cache, tiny_bc_policy, synthetic_root, eval_run, tmp_path
):
    """navsim 1.1's run_pdm_score (the navtest PDMS leaderboard) on the frames of our `eval_run`."""
    run_navsim_script(
        "navsim.planning.script.run_pdm_score",
        [
            HYDRA_SEARCHPATH,
            *official_overrides(agent, tiny_bc_policy),
            f"train_test_split={SPLIT}",
            "train_test_split.scene_filter.frame_interval=2",
            f"metric_cache_path={v1_cache}",
            f"output_dir={tmp_path / 'official'}",
            "experiment_name=judge",
            "worker=sequential",
        ],
        {**navsim_v1, "OPENSCENE_DATA_ROOT": str(synthetic_root), "NAVSIM_EXP_ROOT": str(tmp_path)},
        preamble=NO_MAP if agent == "human" else "",
    )
    rows = one_csv(tmp_path / "official")
    official = {r["token"]: r for r in rows}
    with (eval_run / csv_name(AGENTS[agent][1], "v1")).open() as f:
        reader = csv.DictReader(f)
        ours = {r["token"]: r for r in reader}
    assert reader.fieldnames == [c for c in rows[0] if c]  # navsim 1.1's columns, in its order
    assert set(official) == set(ours) and "average" in ours and len(ours) > 5
    assert all(r["valid"] == "True" for r in official.values())
    for token in official:  # every token, and the "average" row
        assert_rows_equal(official[token], ours[token], list(V1_COLUMNS.values()), (agent, token))
    scores = {round(value(r["score"]), 6) for r in official.values()}
    assert agent == "human" or len(scores) > 2, f"{agent}: scores too uniform to tell agents apart: {scores}"


@pytest.fixture(scope="module")
def two_stage(split_cache, tiny_bc_policy, synthetic_root, tmp_path_factory):
    """A navhard_two_stage-format split of the synthetic test split, its navsim 2.x metric cache and our
    scores of it, all through `python -m navsim_adapter.evaluation.two_stage` (in-process)."""
    from navsim_adapter.evaluation import two_stage

    out = tmp_path_factory.mktemp("two_stage")
    root = ["--data-root", str(synthetic_root)]
    two_stage.main(
        ["write", *root, "--split", SPLIT, "--out", str(out / "split"), "--metric-cache", str(out / "cache")]
    )
    config = out / "split" / "config" / "train_test_split" / "synthetic_two_stage.yaml"
    split = two_stage.TwoStageSplit.load(config, out / "split" / two_stage.SCENES_DIR)
    args = ["--config", str(config), "--scenes", str(split.scenes_path), "--checkpoint", str(tiny_bc_policy)]
    two_stage.main(["score", *root, *args, "--omega", "1", "--steps", "2", "--out", str(out / "ours")])
    cached = ["--metric-cache", str(out / "cache"), "--out", str(out / "ours_cached")]
    two_stage.main(["score", *root, *args, "--omega", "1", "--steps", "2", *cached])
    return split, out / "cache", out / "split", out / "ours"


@pytest.mark.slow
@pytest.mark.parametrize("agent", list(AGENTS))
def test_v2_two_stage_script_agrees_with_our_two_stage_scores(
    agent, two_stage, tiny_bc_policy, synthetic_root, tmp_path
):
    """navsim 2.0.0's run_pdm_score (navhard two-stage EPDMS) with log-replay traffic in both stages (its
    reactive IDM traffic needs nuPlan maps). navsim opens the nuPlan map of every synthetic scene it
    loads, so the map loader is replaced for every agent here (scoring never reads it)."""
    from navsim_adapter.evaluation.two_stage import AGGREGATE_ROWS

    split, cache, folder, our_csvs = two_stage
    run_navsim_script(
        "navsim.planning.script.run_pdm_score",
        [
            HYDRA_SEARCHPATH[:-1] + f",file://{folder / 'config'}]",
            *official_overrides(agent, tiny_bc_policy),
            f"train_test_split={split.name}",
            f"metric_cache_path={cache}",
            f"synthetic_scenes_path={split.scenes_path}",
            f"synthetic_sensor_path={synthetic_root / 'sensor_blobs' / SPLIT}",
            "traffic_agents_policy.reactive._target_="
            "navsim.traffic_agents_policies.log_replay_traffic_agents.LogReplayTrafficAgents",
            "~traffic_agents_policy.reactive.idm_agents_observation",
            f"output_dir={tmp_path / 'official'}",
            "experiment_name=judge",
            "worker=sequential",
        ],
        {"OPENSCENE_DATA_ROOT": str(synthetic_root), "NAVSIM_EXP_ROOT": str(tmp_path)},
        preamble=NO_MAP,
    )
    rows = one_csv(tmp_path / "official")
    official = {r["token"]: r for r in rows}
    with (our_csvs / csv_name(AGENTS[agent][1], "two_stage")).open() as f:
        reader = csv.DictReader(f)
        ours = {r["token"]: r for r in reader}
    assert reader.fieldnames == [c for c in rows[0] if c]  # navsim's columns, in its order
    cached = our_csvs.parent / "ours_cached" / csv_name(AGENTS[agent][1], "two_stage")
    with cached.open() as f:  # the real-data path: contexts from the same metric cache navsim reads
        assert [r["score"] for r in csv.DictReader(f)] == [r["score"] for r in ours.values()]
    assert set(official) == set(ours) == {*split.stage_one, *split.stage_two, *AGGREGATE_ROWS}
    assert all(r["valid"] == "True" for r in official.values())
    columns = [c for c in rows[0] if c not in ("", "token", "valid")]
    for token, theirs in official.items():  # every token of both stages, and the three aggregate rows
        assert_rows_equal(theirs, ours[token], columns, (agent, token))
    distinct = {tuple(round(value(official[t][c]), 6) for c in columns) for t in split.stage_two}
    assert agent == "human" or len(distinct) > 2, (
        f"{agent}: stage-two rows too uniform to tell agents apart: {distinct}"
    )
