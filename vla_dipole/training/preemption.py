"""Preemption: SIGUSR1 / SIGTERM set a flag; the loop checkpoints at the next step boundary and exits.

SLURM sends SIGUSR1 (`--signal=USR1@60`) or SIGTERM before killing a job. Stopping in the middle of
a step would lose work or corrupt state, so the handler only records the request; all ranks agree
on it at a step boundary (any rank signalled -> all stop), write a checkpoint and
`<output_dir>/preempted.json`, which the sbatch script reads to `scontrol requeue` the job.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import torch

PREEMPTED_FILE = "preempted.json"
DEFAULT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionFlag:
    """Installs handlers for `signals`; `requested` turns true when one arrives."""

    def __init__(self, signals: tuple[int, ...] = DEFAULT_SIGNALS) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signum = signum

    def agreed(self, accelerator: Any) -> bool:
        """True on every rank if any rank was signalled (one tiny collective per call)."""
        if accelerator is None or accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=accelerator.device)
        return bool(accelerator.gather(flag).max().item() > 0)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def write_preempted(output_dir: Path, **info: Any) -> Path:
    """Record where the run stopped (step, samples seen, checkpoint) for the requeue logic."""
    path = Path(output_dir) / PREEMPTED_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def clear_preempted(output_dir: Path) -> None:
    (Path(output_dir) / PREEMPTED_FILE).unlink(missing_ok=True)
