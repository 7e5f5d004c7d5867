"""vla_dipole.tables: the one text-table formatter and CSV writer of the reports."""

from __future__ import annotations

import csv
import math

import pytest

from vla_dipole.tables import format_table, write_csv


def test_format_table_pads_aligns_and_formats_per_column():
    text = format_table(
        ["name", "n", "score"],
        [("constant_velocity", 3, 0.123456), ("bc", 12, float("nan"))],
        title="scores",
        formats=["", "", ".2f"],
    )
    lines = text.splitlines()
    assert lines[0] == "scores"
    assert lines[1] == "name                n  score"
    assert lines[2] == "-----------------  --  -----"
    assert lines[3] == "constant_velocity   3   0.12"
    assert lines[4] == "bc                 12      -"


def test_format_table_refuses_ragged_rows():
    with pytest.raises(ValueError, match=r"expected 2 cells"):
        format_table(["a", "b"], [(1, 2, 3)])
    with pytest.raises(ValueError, match=r"formats: expected 2 entries"):
        format_table(["a", "b"], [(1, 2)], formats=[".1f"])


def test_write_csv_empty_for_missing_and_full_precision(tmp_path):
    third = 1.0 / 3.0
    path = write_csv(
        tmp_path / "t.csv",
        ["token", "valid", "score"],
        [["a", True, third], ["b", False, float("nan")], {"token": "c", "score": None}],
    )
    rows = list(csv.DictReader(path.open()))
    assert [r["token"] for r in rows] == ["a", "b", "c"]
    assert float(rows[0]["score"]) == third  # no rounding: the number NAVSIM's pandas would write
    assert rows[1]["score"] == "" and rows[2]["score"] == "" and rows[2]["valid"] == ""
    assert rows[0]["valid"] == "True" and not math.isnan(float(rows[0]["score"]))


def test_write_csv_names_the_file_on_a_bad_row(tmp_path):
    with pytest.raises(ValueError, match=r"t\.csv: row has columns \['scor'\] not in the header"):
        write_csv(tmp_path / "t.csv", ["token", "score"], [{"token": "a", "scor": 1.0}])
    with pytest.raises(ValueError, match=r"t\.csv: row .* expected 2 cells, got 3"):
        write_csv(tmp_path / "t.csv", ["token", "score"], [["a", 1.0, 2.0]])
