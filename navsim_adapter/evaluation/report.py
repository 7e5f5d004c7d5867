"""Turn per-token evaluation records into NAVSIM-style CSVs, a markdown summary and plots.

Records are dicts `{row, token, valid, error, <sub-scores>, trajectory}`; one "row" is one agent
(constant velocity, human, a checkpoint at one omega). CSV column names are NAVSIM's: v1 files
(`*_v1.csv`, score = PDMS, last row `average`) and v2 files (`*_v2.csv`, score = EPDMS, last row
`average_all_frames`), as NAVSIM v1 `run_pdm_score` / v2 `run_pdm_score_one_stage` write them.

Two-frame extended comfort (EC) is a second pass over finished records: each batch's simulated ego
states are kept in `OUT/states/*.npz`; `add_extended_comfort` pairs every record with the same row's
record of the previous evaluated frame of its log (start_time gap <= 0.55 s, as NAVSIM's one-stage
`infer_start_adjacent_mapping`) and re-computes EPDMS with EC (/16). Without a previous frame EC stays
empty and EPDMS keeps NAVSIM's /14 normalisation.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from navsim_adapter.pdm.columns import LABELS, V1_COLUMNS, V2_COLUMNS
from navsim_adapter.pdm.simulation import AX, AY, HEADING, NUM_STEPS, STATE_DIM

# (version, our key -> NAVSIM column (score last), NAVSIM's token of the average row)
CSV_VERSIONS = (("v1", V1_COLUMNS, "average"), ("v2", V2_COLUMNS, "average_all_frames"))
SUMMARY_METRICS = ("nc", "dac", "ddc", "tlc", "ep", "ttc", "comfort", "lk", "hc", "ec", "pdms", "epdms")
RECORD_METRICS = (*SUMMARY_METRICS, "ep_v1", "ttc_v1", "ddc_v1")  # + v1's own sub-scores (v1 csv)
BASELINE_ROWS = ("constant_velocity", "human")
OMEGA_ROW = re.compile(r"^(?P<name>.+)@omega=(?P<omega>[-+0-9.eE]+)$")
STATES_DIR = "states"
# The only state columns EC reads (heading, longitudinal / lateral acceleration): stored in float64,
# so EC from the stored columns equals EC from the full simulated states bit for bit.
EC_COLUMNS = (HEADING, AX, AY)
EC_MAX_GAP_S = 0.55  # NAVSIM: adjacent original frames of one log
SIM_INTERVAL_S = 0.1  # simulated state spacing: overlap = round(gap / 0.1) steps
EC_CHUNK = 4096  # record pairs scored per extended_comfort call


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


# ---- two-frame extended comfort ----------------------------------------------------------------
def save_states(out: Path, tokens: Sequence[str], rows: Sequence[str], states: np.ndarray) -> Path:
    """Write one batch's simulated states [B, R, 41, 11] (EC columns only) atomically to OUT/states/.

    Named after the batch's first token: a batch re-evaluated after a kill overwrites its own file.
    Call it before appending the batch's records, so every recorded token has its states.
    """
    folder = out / STATES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tokens[0]}.npz"
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as f:
        np.savez(f, tokens=np.asarray(tokens), rows=np.asarray(rows), states=states[..., EC_COLUMNS])
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)
    return path


def load_states(dirs: Iterable[Path]) -> dict[tuple[str, str], np.ndarray]:
    """(row, token) -> [41, 3] EC columns of every batch file under `dir/states` (newest file wins)."""
    files = [p for d in dirs for p in (Path(d) / STATES_DIR).glob("*.npz")]
    out: dict[tuple[str, str], np.ndarray] = {}
    for path in sorted(files, key=lambda p: p.stat().st_mtime_ns):
        try:
            with np.load(path) as z:
                tokens, rows, states = z["tokens"], z["rows"], z["states"]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: expected an npz with tokens, rows, states ({err})") from err
        if states.shape != (len(tokens), len(rows), NUM_STEPS + 1, len(EC_COLUMNS)):
            raise ValueError(
                f"{path}: field 'states' expected shape [{len(tokens)}, {len(rows)}, {NUM_STEPS + 1}, "
                f"{len(EC_COLUMNS)}], got {states.shape}"
            )
        for b, token in enumerate(tokens.tolist()):
            for j, row in enumerate(rows.tolist()):
                out[(row, token)] = states[b, j]
    return out


def previous_frames(records: Iterable[dict]) -> dict[tuple[str, str], tuple[str, float]]:
    """(row, token) -> (previous token, gap s): the row's preceding valid record of the same log by
    start_time, kept when 0 < gap <= 0.55 s (NAVSIM's adjacency of original frames)."""
    groups: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for r in records:
        if r.get("valid") and r.get("start_time") is not None and r.get("log_name") is not None:
            groups.setdefault((r["row"], r["log_name"]), []).append((float(r["start_time"]), r["token"]))
    out = {}
    for (row, _), frames in groups.items():
        frames.sort()
        for (t0, prev), (t1, cur) in zip(frames, frames[1:], strict=False):
            if 0 < t1 - t0 <= EC_MAX_GAP_S:
                out[(row, cur)] = (prev, t1 - t0)
    return out


def _full_states(cols: np.ndarray) -> np.ndarray:
    full = np.zeros(cols.shape[:-1] + (STATE_DIM,))
    full[..., EC_COLUMNS] = cols
    return full


def epdms(r: dict, ec: float | None) -> float:
    """EPDMS of one record's (human-filtered) sub-scores, with EC (/16) or without (/14), as the scorer."""
    from navsim_adapter.pdm.scorer import W_EC, W_EP, W_HC, W_LK, W_TTC

    multi = r["nc"] * r["dac"] * r["ddc"] * r["tlc"]
    weighted = W_EP * r["ep"] + W_TTC * r["ttc"] + W_LK * r["lk"] + W_HC * r["hc"]
    if ec is None:
        return multi * weighted / (W_EP + W_TTC + W_LK + W_HC)
    return multi * (weighted + W_EC * ec) / (W_EP + W_TTC + W_LK + W_HC + W_EC)


def add_extended_comfort(records: list[dict], states: dict[tuple[str, str], np.ndarray]) -> list[dict]:
    """Copies of `records` with `ec` and EC-aware `epdms` wherever the previous frame's states exist."""
    from navsim_adapter.pdm.metrics import extended_comfort

    pairs: dict[int, list[tuple[int, str]]] = {}  # overlap steps -> [(record index, prev token)]
    prev = previous_frames(records)
    for i, r in enumerate(records):
        p = prev.get((r["row"], r["token"]))
        if p is not None and (r["row"], r["token"]) in states and (r["row"], p[0]) in states:
            pairs.setdefault(round(p[1] / SIM_INTERVAL_S), []).append((i, p[0]))
    out = [dict(r) for r in records]
    for overlap, all_items in pairs.items():
        for k in range(0, len(all_items), EC_CHUNK):  # bounded memory on navtest-sized runs
            items = all_items[k : k + EC_CHUNK]
            cur = np.stack([states[(records[i]["row"], records[i]["token"])] for i, _ in items])
            before = np.stack([states[(records[i]["row"], t)] for i, t in items])
            ec = extended_comfort(_full_states(cur), _full_states(before), overlap_start=overlap)
            for (i, _), v in zip(items, ec.tolist(), strict=True):
                out[i].update(ec=v, epdms=epdms(out[i], v))
    return out
