"""The score names are defined once (navsim_adapter.pdm.columns); the scorer's result, the CSV columns,
the shard columns, the evaluation records and the tables must all agree with them."""

from __future__ import annotations

import csv
import dataclasses
import importlib

import numpy as np

from navsim_adapter.evaluation import report
from navsim_adapter.evaluation.records import RESULT_SCORES as RECORD_SCORES
from navsim_adapter.pdm import PDMResult, score
from navsim_adapter.pdm.columns import LABELS, RESULT_SCORES, SCORE_NAMES, V1_COLUMNS, V2_COLUMNS
from tests.pdm.toy_road import toy_candidates, toy_context

NOT_SCORES = {"valid", "simulated_states", "progress", "timings"}


def test_result_fields_are_the_score_names_in_order():
    fields = [f.name for f in dataclasses.fields(PDMResult) if f.name not in NOT_SCORES]
    assert tuple(fields) == RESULT_SCORES == PDMResult.SUBSCORES
    assert RESULT_SCORES[: len(SCORE_NAMES)] == SCORE_NAMES and len(set(RESULT_SCORES)) == len(RESULT_SCORES)


def test_every_csv_column_and_label_names_a_result_score():
    assert set(V1_COLUMNS) <= set(RESULT_SCORES) and set(V2_COLUMNS) <= set(RESULT_SCORES)
    assert set(LABELS) == set(SCORE_NAMES)


def test_shards_and_records_use_the_same_names():
    for module in ("vla_dipole.data.shard_format",):
        assert importlib.import_module(module).SCORE_NAMES is SCORE_NAMES, module
    assert RECORD_SCORES is RESULT_SCORES


def test_a_scored_result_fills_every_csv_column(tmp_path):
    """Score two real scenes, turn the result into records as the evaluator does, write NAVSIM's CSVs:
    every column holds the scorer's number for that name."""
    ctxs = [toy_context(s) for s in range(2)]
    result = score(ctxs, np.stack([toy_candidates(c, 1, s) for s, c in enumerate(ctxs)]))
    records = [
        {
            "row": "agent",
            "token": c.token,
            "valid": True,
            **{k: float(getattr(result, k)[b, 0]) for k in RESULT_SCORES},
        }
        for b, c in enumerate(ctxs)
    ]
    report.write_csvs(records, tmp_path)
    for version, columns, _ in report.CSV_VERSIONS:
        with (tmp_path / report.csv_name("agent", version)).open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["token", "valid", *columns.values()], version
        for b, c in enumerate(ctxs):
            row = next(r for r in rows if r["token"] == c.token)
            for key, column in columns.items():
                want = getattr(result, key)[b, 0]
                got = float(row[column]) if row[column] else float("nan")
                assert (np.isnan(want) and np.isnan(got)) or abs(got - want) < 1e-6, (version, key)
