"""`--metric-cache`: scoring contexts read from a real-format NAVSIM metric cache give the same results
as contexts built from our scenes (the cache is written by the official navsim classes)."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

pytestmark = pytest.mark.navsim


@pytest.fixture(scope="module")
def metric_cache(synthetic_root, tmp_path_factory):
    if importlib.util.find_spec("navsim") is None:
        pytest.skip("official navsim not installed (make install-navsim); the metric-cache path needs it")
    from navsim_adapter.pdm.metric_cache import write_split_cache

    root = tmp_path_factory.mktemp("metric_cache")
    write_split_cache(synthetic_root, "test", root, frame_interval=2)
    return root


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_metric_cache_scores_equal_scene_built_contexts(
    eval_run, eval_cmd, eval_main, metric_cache, tmp_path, one_thread
):
    out = tmp_path / "cached"
    eval_main(eval_cmd(out, "--metric-cache", str(metric_cache)))
    for name in ("human_v2.csv", "constant_velocity_v2.csv", "dipole_omega1_v2.csv"):
        ref, got = _rows(eval_run / name), _rows(out / name)
        assert [r["token"] for r in got] == [r["token"] for r in ref]
        for a, b in zip(ref, got, strict=True):
            for col, val in a.items():
                if col in ("token", "valid") or val == "":
                    assert b[col] == val, (name, a["token"], col)
                else:
                    assert float(b[col]) == pytest.approx(float(val), abs=1e-6), (name, a["token"], col)


def test_token_missing_from_cache_is_invalid_not_fatal(
    eval_cmd, eval_main, metric_cache, tmp_path, one_thread
):
    victim = sorted(p for p in metric_cache.rglob("metric_cache.pkl"))[0]
    token = victim.parent.name
    meta = next((metric_cache / "metadata").glob("*.csv"))
    lines = [ln for ln in meta.read_text().splitlines() if f"/{token}/" not in ln]
    sparse = tmp_path / "sparse_meta"
    (sparse / "metadata").mkdir(parents=True)
    (sparse / "metadata" / meta.name).write_text("\n".join(lines) + "\n")
    # same cache files, index without one token (paths in the csv are absolute or cache-relative)
    for ln in lines[1:]:
        assert ln
    out = tmp_path / "sparse"
    eval_main(eval_cmd(out, "--metric-cache", str(sparse)))
    rows = {r["token"]: r for r in _rows(out / "human_v1.csv")}
    assert rows[token]["valid"] == "False"
    errors = [json.loads(ln)["error"] for ln in (out / "records.jsonl").read_text().splitlines()]
    assert any(
        e and token in e and str(sparse) in e for e in errors
    )  # the record says which token, which cache
    assert sum(r["valid"] == "True" for t, r in rows.items() if t not in (token, "average")) == len(rows) - 2
