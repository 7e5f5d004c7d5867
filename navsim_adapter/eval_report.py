"""Turn per-token evaluation records into NAVSIM-style CSVs, a markdown summary and plots.

Records are dicts `{row, token, valid, error, <sub-scores>, trajectory}`; one "row" is one agent
(constant velocity, human, a checkpoint at one omega). CSV column names are NAVSIM's: v1 files
(`*_v1.csv`, score = PDMS, last row `average`) and v2 files (`*_v2.csv`, score = EPDMS, last row
`average_all_frames`), as NAVSIM v1 `run_pdm_score` / v2 `run_pdm_score_one_stage` write them.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from navsim_adapter.pdm.columns import LABELS, V1_COLUMNS, V2_COLUMNS

# (version, our key -> NAVSIM column (score last), NAVSIM's token of the average row)
CSV_VERSIONS = (("v1", V1_COLUMNS, "average"), ("v2", V2_COLUMNS, "average_all_frames"))
SUMMARY_METRICS = ("nc", "dac", "ddc", "tlc", "ep", "ttc", "comfort", "lk", "hc", "ec", "pdms", "epdms")
BASELINE_ROWS = ("constant_velocity", "human")
OMEGA_ROW = re.compile(r"^(?P<name>.+)@omega=(?P<omega>[-+0-9.eE]+)$")


def omega_row(name: str, omega: float) -> str:
    return f"{name}@omega={omega:g}"


def read_records(paths: Iterable[Path]) -> list[dict]:
    """All records of the given jsonl files; a torn last line (killed run) is ignored."""
    out: list[dict] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def latest_records(records: Iterable[dict]) -> list[dict]:
    """One record per (row, token), the last one written (a re-evaluated token replaces its old rows)."""
    return list({(r["row"], r["token"]): r for r in records}.values())


def _fmt(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6f}"


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def csv_name(row: str, version: str) -> str:
    """File name of one row's csv: `dipole@omega=0.5` -> `dipole_omega0.5_v1.csv`."""
    return f"{row.replace('@', '_').replace('=', '')}_{version}.csv"


def write_csvs(records: list[dict], out: Path) -> list[Path]:
    """One v1 and one v2 csv per row, NAVSIM's columns (`token, valid, <metrics>, score`) + its average row.

    Invalid tokens are kept with valid=False and empty (NaN) scores, as NAVSIM does; the average is
    over valid tokens and its `valid` is True only if every token was.
    """
    written = []
    for row in sorted({r["row"] for r in records}):
        recs = sorted((r for r in records if r["row"] == row), key=lambda r: r["token"])
        valid = [r for r in recs if r["valid"]]
        for version, columns, average in CSV_VERSIONS:
            keys = list(columns)
            path = out / csv_name(row, version)
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["token", "valid", *columns.values()])
                for r in recs:
                    w.writerow(
                        [r["token"], r["valid"], *[_fmt(r.get(k) if r["valid"] else None) for k in keys]]
                    )
                w.writerow(
                    [
                        average,
                        len(valid) == len(recs),
                        *[_fmt(_mean([r.get(k) for r in valid])) for k in keys],
                    ]
                )
            written.append(path)
    return written


def summarize(records: list[dict]) -> dict[str, dict[str, float]]:
    """row -> {metric: mean over valid tokens (x100), n_valid, n_invalid}."""
    table: dict[str, dict[str, float]] = {}
    for row in {r["row"] for r in records}:
        recs = [r for r in records if r["row"] == row]
        valid = [r for r in recs if r["valid"]]
        stats = {m: 100.0 * _mean([r.get(m) for r in valid]) for m in SUMMARY_METRICS}
        stats.update(n_valid=len(valid), n_invalid=len(recs) - len(valid))
        table[row] = stats
    return table


def row_order(rows: Iterable[str]) -> list[str]:
    """Baselines first, then checkpoints, each checkpoint's omegas ascending."""
    fixed = list(BASELINE_ROWS)

    def key(row: str):
        if row in fixed:
            return (fixed.index(row), "", 0.0)
        m = OMEGA_ROW.match(row)
        if m:
            return (3, m["name"], float(m["omega"]))
        return (2, row, 0.0)

    return sorted(rows, key=key)


def markdown_table(table: dict[str, dict[str, float]]) -> str:
    lines = [
        "| agent | " + " | ".join(LABELS[m] for m in SUMMARY_METRICS) + " | tokens (invalid) |",
        "|---|" + "---:|" * len(SUMMARY_METRICS) + "---:|",
    ]
    for row in row_order(table):
        s = table[row]
        cells = ["–" if math.isnan(s[m]) else f"{s[m]:.1f}" for m in SUMMARY_METRICS]
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {s['n_valid']} ({s['n_invalid']}) |")
    return "\n".join(lines)


def plot_omega_curve(table: dict[str, dict[str, float]], path: Path) -> Path | None:
    """PDMS / EPDMS vs omega per checkpoint, baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    curves: dict[str, list[tuple[float, float, float]]] = {}
    for row, s in table.items():
        m = OMEGA_ROW.match(row)
        if m:
            curves.setdefault(m["name"], []).append((float(m["omega"]), s["pdms"], s["epdms"]))
    if not curves:
        return None
    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.subplots()
    for name, pts in sorted(curves.items()):
        pts.sort()
        om = [p[0] for p in pts]
        line = ax.plot(om, [p[1] for p in pts], "o-", label=f"{name} PDMS")[0]
        ax.plot(om, [p[2] for p in pts], "s--", color=line.get_color(), alpha=0.6, label=f"{name} EPDMS")
    for i, base in enumerate(r for r in table if not OMEGA_ROW.match(r)):
        ax.axhline(table[base]["pdms"], color=f"C{i + 4}", ls=":", label=f"{base} PDMS")
    ax.set_xlabel("omega (greediness)")
    ax.set_ylabel("score")
    ax.set_title("PDM score vs omega")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path
