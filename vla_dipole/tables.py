"""Plain-text tables and CSV files, written one way by every report (evaluation, score CLI, benches,
the bandit proof). Standard library only: any layer may use it."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_table(
    header: Sequence[str],
    rows: Iterable[Sequence],
    *,
    title: str | None = None,
    formats: str | Sequence[str] = ".3f",
    missing: str = "-",
) -> str:
    """Columns padded to their widest cell (numeric columns right-aligned, the others left), a dash
    line under the header. `formats`: the format spec of float cells, one for all columns or one per
    column; None / NaN cells print as `missing`."""
    per_column = [formats] * len(header) if isinstance(formats, str) else list(formats)
    if len(per_column) != len(header):
        raise ValueError(f"formats: expected {len(header)} entries (one per column), got {len(per_column)}")

    def text(value: object, spec: str) -> str:
        if _is_missing(value):
            return missing
        return format(value, spec) if isinstance(value, float) else str(value)

    raw = [list(row) for row in rows]
    for row in raw:
        if len(row) != len(header):
            raise ValueError(f"row {row}: expected {len(header)} cells ({list(header)}), got {len(row)}")
    body = [[text(v, spec) for v, spec in zip(row, per_column, strict=True)] for row in raw]
    cells = [list(map(str, header)), *body]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [
        all(_is_missing(r[i]) or isinstance(r[i], int | float) for r in raw) for i in range(len(header))
    ]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True)
        )

    lines = [line(cells[0]), "  ".join("-" * w for w in widths), *map(line, body)]
    return "\n".join(([title] if title else []) + [ln.rstrip() for ln in lines])


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence | Mapping]) -> Path:
    """A CSV with `header`; a row is a sequence of cells or a mapping by column (absent columns empty).
    None and NaN are written empty and floats at full precision, as NAVSIM's (pandas) CSVs are."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            if isinstance(row, Mapping):
                unknown = set(row) - set(header)
                if unknown:
                    raise ValueError(
                        f"{path}: row has columns {sorted(unknown)} not in the header {list(header)}"
                    )
                cells = [row.get(k) for k in header]
            else:
                cells = list(row)
            if len(cells) != len(header):
                raise ValueError(
                    f"{path}: row {cells[:3]}...: expected {len(header)} cells, got {len(cells)}"
                )
            w.writerow(["" if _is_missing(c) else c for c in cells])
    return path
