"""The evaluation run's records: `OUT/records.jsonl`, one json line per (token, agent row), appended
per batch so a killed run resumes where it stopped; chunked runs are merged from these files.

A record is `{row, token, valid, error, log_name, start_time, <every PDM score>, trajectory}`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from navsim_adapter.pdm.columns import RESULT_SCORES

RECORDS_FILE = "records.jsonl"
SETTINGS_FILE = "settings.json"  # what produced the records (EvalSettings), echoed in summary.md


def chunk_tokens(tokens: Sequence[str], chunk: tuple[int, int], align: int = 1) -> list[str]:
    """Chunk i of N: contiguous, balanced slices of the loader's (sorted) token order.

    Slices are cut at multiples of `align` (the batch size) so every chunk batches its scenes exactly
    like a single run does: merged chunks then reproduce the single-run numbers bit for bit.
    """
    i, n = chunk
    batches = -(-len(tokens) // align)
    bounds = np.minimum(np.linspace(0, batches, n + 1).round().astype(int) * align, len(tokens))
    return list(tokens[bounds[i] : bounds[i + 1]])


class RecordWriter:
    """Append-only jsonl, synced per batch: the resume point of a killed run."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        """A run killed inside a write leaves a partial last line; cut it so appends start on a fresh line."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def done_tokens(self, rows: Sequence[str]) -> set[str]:
        seen: dict[str, set[str]] = {}
        for r in read_records([self.path]):
            seen.setdefault(r["token"], set()).add(r["row"])
        return {t for t, have in seen.items() if set(rows) <= have}

    def write(self, records: list[dict]) -> None:
        """One write(2) per batch on an O_APPEND descriptor: a kill leaves whole batches (or a torn tail)."""
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def invalid_records(token: str, rows: Sequence[str], error: str) -> list[dict]:
    return [{"row": row, "token": token, "valid": False, "error": error} for row in rows]


def score_fields(result, b: int, j: int) -> dict[str, float | None]:
    """Every score of scene b, candidate j of a PDMResult (NaN -> None: json has no NaN)."""
    values = {k: float(getattr(result, k)[b, j]) for k in RESULT_SCORES}
    return {k: None if np.isnan(v) else v for k, v in values.items()}


def scored_records(scene, ctx, rows: Sequence[str], result, b: int, trajs: np.ndarray) -> list[dict]:
    """One record per agent row of scene b: its scores, its trajectory and the frame it was scored at."""
    # log_name + start_time (None for synthetic frames) find the previous frame for EC in the report
    frame = {
        "log_name": scene.metadata.log_name,
        "start_time": None if ctx.is_synthetic else ctx.timestamp_us * 1e-6,
    }
    out = []
    for j, row in enumerate(rows):
        rec = {"row": row, "token": scene.token, "valid": bool(result.valid[b, j]), "error": None, **frame}
        rec.update(score_fields(result, b, j))
        rec["trajectory"] = np.round(trajs[b, j], 4).tolist()
        if not rec["valid"]:
            rec["error"] = "trajectory not finite"
        out.append(rec)
    return out


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
