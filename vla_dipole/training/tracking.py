"""Run metrics: tensorboard scalars/histograms plus a `metrics.jsonl` that tests and scripts can read.

Only rank 0 writes. On resume the jsonl is cut back to the resumed step so the file always holds
one line per optimizer step of the (possibly interrupted) run, exactly like an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

METRICS_FILE = "metrics.jsonl"


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(output_dir: Path, round_: int, step: int) -> None:
    """Keep only lines up to (round_, step) inclusive: what the resumed checkpoint had seen."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return
    keep = [
        json.dumps(m)
        for m in read_metrics(output_dir)
        if (m.get("round", 0), m.get("step", 0)) <= (round_, step)
    ]
    path.write_text("".join(line + "\n" for line in keep))


class MetricsLogger:
    """Rank-0 logger: scalars to tensorboard and jsonl, weight histograms to tensorboard."""

    def __init__(self, output_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / METRICS_FILE
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))

    def log(
        self, record: dict[str, Any], global_step: int, histograms: dict[str, torch.Tensor] | None = None
    ) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "round"):
                    self.writer.add_scalar(key, value, global_step)
            for key, values in (histograms or {}).items():
                if values.numel():
                    self.writer.add_histogram(key, values.detach().float().cpu(), global_step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
