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

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from navsim_adapter.evaluation.records import SETTINGS_FILE
from navsim_adapter.pdm.columns import LABELS, SCORE_NAMES, V1_COLUMNS, V2_COLUMNS
from navsim_adapter.pdm.simulation import AX, AY, HEADING, NUM_STEPS, STATE_DIM
from vla_dipole.tables import write_csv

log = logging.getLogger(__name__)

# (version, our key -> NAVSIM column (score last), NAVSIM's token of the average row)
CSV_VERSIONS = (("v1", V1_COLUMNS, "average"), ("v2", V2_COLUMNS, "average_all_frames"))
VERSIONS = {version: (columns, average) for version, columns, average in CSV_VERSIONS}
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


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def csv_name(row: str, version: str) -> str:
    """File name of one row's csv: `dipole@omega=0.5` -> `dipole_omega0.5_v1.csv`."""
    return f"{row.replace('@', '_').replace('=', '')}_{version}.csv"


def write_navsim_csv(path: Path, records: Sequence[dict], version: str) -> Path:
    """One agent's records as NAVSIM writes them (`token, valid, <metrics>, score` + its average row).

    Invalid tokens are kept with valid=False and empty (NaN) scores, as NAVSIM does; the average is
    over valid tokens and its `valid` is True only if every token was.
    """
    columns, average = VERSIONS[version]
    recs = sorted(records, key=lambda r: r["token"])
    valid = [r for r in recs if r["valid"]]
    rows = [[r["token"], r["valid"], *[r.get(k) if r["valid"] else None for k in columns]] for r in recs]
    rows.append([average, len(valid) == len(recs), *[_mean([r.get(k) for r in valid]) for k in columns]])
    return write_csv(path, ["token", "valid", *columns.values()], rows)


def write_csvs(records: list[dict], out: Path) -> list[Path]:
    """One v1 and one v2 csv per row (agent), named by `csv_name`."""
    return [
        write_navsim_csv(out / csv_name(row, version), [r for r in records if r["row"] == row], version)
        for row in sorted({r["row"] for r in records})
        for version, _, _ in CSV_VERSIONS
    ]


def summarize(records: list[dict]) -> dict[str, dict[str, float]]:
    """row -> {metric: mean over valid tokens (x100), n_valid, n_invalid}."""
    table: dict[str, dict[str, float]] = {}
    for row in {r["row"] for r in records}:
        recs = [r for r in records if r["row"] == row]
        valid = [r for r in recs if r["valid"]]
        stats = {m: 100.0 * _mean([r.get(m) for r in valid]) for m in SCORE_NAMES}
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
        "| agent | " + " | ".join(LABELS[m] for m in SCORE_NAMES) + " | tokens (invalid) |",
        "|---|" + "---:|" * len(SCORE_NAMES) + "---:|",
    ]
    for row in row_order(table):
        s = table[row]
        cells = ["–" if math.isnan(s[m]) else f"{s[m]:.1f}" for m in SCORE_NAMES]
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


# ---- the report of one run ----------------------------------------------------------------------
EC_NOTE = (
    "EC (two-frame extended comfort) compares each token's simulated plan with the same agent's plan "
    "at the previous evaluated frame of its log (0.5 s earlier, NAVSIM one-stage); where there is none "
    "(first frame of a log, --frame-interval > 1, previous token not evaluated) EC is empty and that "
    "token's EPDMS is normalised without it (/14), as NAVSIM does."
)


def write_report(
    out: Path,
    records: list[dict],
    loader=None,
    worst_k: int = 4,
    name: str = "dipole",
    state_dirs: Sequence[Path] | None = None,
) -> Path:
    """CSVs + summary.md + omega plot + BEV pictures of the worst scenes of the best omega.

    EC and the final EPDMS are computed here from the simulated states under `state_dirs` (default
    `out`): the raw records stay the scorer's, so resuming and merging stay exact.
    """
    states = load_states(state_dirs if state_dirs is not None else [out])
    records = add_extended_comfort(records, states)
    write_csvs(records, out)
    table = summarize(records)
    md = markdown_table(table)
    invalid = sorted({(r["token"], r["error"]) for r in records if not r["valid"] and r.get("error")})
    valid = [r for r in records if r["valid"]]
    with_ec = sum(r.get("ec") is not None for r in valid)
    text = (
        f"# PDM-score evaluation\n\n{md}\n\nScores x100, mean over valid tokens. {EC_NOTE} "
        f"EC available for {with_ec} of {len(valid)} valid (token, row) records.\n"
    )
    settings = out / SETTINGS_FILE
    if settings.is_file():
        text += "\n## Settings\n\n" + "\n".join(
            f"- {k}: `{v}`" for k, v in json.loads(settings.read_text()).items()
        )
        text += "\n"
    if invalid:
        text += "\n## Invalid tokens\n\n" + "\n".join(f"- `{t}`: {e}" for t, e in invalid[:50]) + "\n"
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(table, indent=2))
    plot_omega_curve(table, out / "omega_curve.png")
    if loader is not None and worst_k > 0:
        _worst_pictures(out, records, table, loader, worst_k, name)
    return out / "summary.md"


def _worst_pictures(out: Path, records, table, loader, k: int, name: str) -> None:
    from navsim_adapter.evaluation.visualize import render_scene
    from navsim_adapter.geometry import global_to_local
    from navsim_adapter.pdm import build_context

    rows = [r for r in table if r.startswith(f"{name}@")]
    if not rows:
        return
    best = max(rows, key=lambda r: table[r]["pdms"])
    recs = sorted((r for r in records if r["row"] == best and r["valid"]), key=lambda r: r["pdms"])[:k]
    (out / "worst").mkdir(exist_ok=True)
    for r in recs:
        try:
            scene = loader.get_scene(r["token"])
            ctx = build_context(scene)
            ref = global_to_local(ctx.reference_poses[5::5], ctx.ego_state[:3])
            fig = render_scene(
                scene,
                {
                    f"{best} (PDMS {100 * r['pdms']:.0f})": np.asarray(r["trajectory"]),
                    "PDM-Closed reference": ref,
                },
            )
            fig.savefig(out / "worst" / f"{r['token']}.png")
        except Exception as err:  # noqa: BLE001 - pictures are a courtesy, never fail the report
            log.warning("could not draw %s: %s", r["token"], err)


def require_valid_rows(records: Sequence[dict], summary: Path) -> None:
    """Exit non-zero when an agent row (checkpoint x omega, baseline) has no valid token at all: a
    policy whose every trajectory is NaN must not look like a finished evaluation."""
    rows = dict.fromkeys(r["row"] for r in records)
    dead = [row for row in rows if not any(r["valid"] for r in records if r["row"] == row)]
    if dead:
        errors = sorted({r.get("error") or "?" for r in records if r["row"] in dead})
        raise SystemExit(
            f"evaluate: no valid token for {dead} (errors: {errors[:3]}); see {summary}, 'Invalid tokens'"
        )
