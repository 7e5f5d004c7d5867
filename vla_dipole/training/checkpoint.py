"""Atomic checkpoints with keep-last-M and everything needed for an exact resume.

A checkpoint directory `checkpoint-<step:08d>` holds accelerate's state (model / DeepSpeed engine,
optimizer, every rank's RNG states) plus `trainer_state.json` (step, samples seen, online round, data
position) and optional extras (EMA weights). It is written under a temporary name and renamed when
complete, so a run killed at any moment leaves either the previous or the new checkpoint, never half of one.
`checksums.json` (size and sha256 of every file) is written last; a resume takes the newest checkpoint
whose files still match it and says which newer ones it passed over and why (a disk that filled up or
a file damaged after the rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-checkpoint-"
STATE_FILE = "trainer_state.json"
CHECKSUMS_FILE = "checksums.json"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


@dataclass
class TrainerState:
    """Bookkeeping of the training loop; with the RNG states it defines where a resumed run continues."""

    step: int = 0  # optimizer steps done in the current phase
    samples_seen: int = 0  # samples consumed in the current phase (= data position)
    round: int = 0  # online round (0 = the offline phase)
    phase_total_samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> TrainerState:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(
                f"{path}: unreadable trainer state ({exc}); expected the fields of TrainerState"
            ) from exc


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


class DamagedCheckpointError(ValueError):
    """No intact checkpoint to resume from; the message names every damaged file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: Path) -> None:
    """Record size and sha256 of every file under `directory` (call once it is complete)."""
    files = sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.name != CHECKSUMS_FILE)
    table = {str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (Path(directory) / CHECKSUMS_FILE).write_text(json.dumps(table, indent=1, sort_keys=True))


def checkpoint_problem(directory: Path) -> str | None:
    """What is wrong with a checkpoint directory (the first damaged file), or None when intact.
    Checkpoints without checksums.json (older runs) are judged by their trainer state alone."""
    directory = Path(directory)
    state = directory / STATE_FILE
    if not state.is_file():
        return f"{state} is missing"
    table_path = directory / CHECKSUMS_FILE
    if not table_path.is_file():
        try:
            TrainerState.from_file(state)
        except ValueError as exc:
            return str(exc)
        return None
    try:
        table = json.loads(table_path.read_text())
    except (OSError, ValueError) as exc:
        return f"{table_path} is unreadable: {exc}"
    for rel, want in sorted(table.items()):
        path = directory / rel
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{path} has {size} bytes, {want['bytes']} were written (truncated?)"
        if _sha256(path) != want["sha256"]:
            return f"{path} differs from the sha256 recorded when it was written (damaged)"
    return None


def resume_checkpoint(output_dir: Path, log: Callable[[str], None] | None = print) -> Path | None:
    """The newest intact checkpoint (None when there is none at all); damaged newer ones are reported
    through `log`. Raises DamagedCheckpointError when checkpoints exist but none is intact."""
    dirs = checkpoint_dirs(output_dir)
    problems = []
    for d in reversed(dirs):
        problem = checkpoint_problem(d)
        if problem is None:
            if problems and log is not None:
                log(f"[train] skipping damaged checkpoints ({'; '.join(problems)}); resuming from {d}")
            return d
        problems.append(f"{d.name}: {problem}")
    if problems:
        raise DamagedCheckpointError(
            f"no intact checkpoint in {output_dir}: {'; '.join(problems)}. "
            "Remove them (or set checkpoint.resume=false) to start over"
        )
    return None


def latest_checkpoint(output_dir: Path) -> Path | None:
    dirs = [d for d in checkpoint_dirs(output_dir) if (d / STATE_FILE).is_file()]
    return dirs[-1] if dirs else None


def checkpoint_name(index: int) -> str:
    return f"{PREFIX}{index:08d}"


def save_checkpoint(
    output_dir: Path,
    index: int,
    state: TrainerState,
    save_state: Callable[[Path], None],
    is_main: bool,
    barrier: Callable[[], None],
    keep_last: int,
    extras: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write checkpoint `index` atomically; every rank calls this (DeepSpeed saves its shard per rank).

    `save_state(tmp_dir)` writes the framework state (all ranks); `extras` are written by rank 0 only.
    """
    output_dir = Path(output_dir)
    final = output_dir / checkpoint_name(index)
    tmp = output_dir / f"{TMP_PREFIX}{index:08d}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    save_state(tmp)
    barrier()
    if is_main:
        for _, write in (extras or {}).items():
            write(tmp)
        (tmp / STATE_FILE).write_text(state.to_json())
        write_checksums(tmp)
        _fsync_dir(tmp)
        if final.exists():  # a re-save of the same index (e.g. after a resume) replaces it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(output_dir)
        prune_checkpoints(output_dir, keep_last)
    barrier()
    return final


def prune_checkpoints(output_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints and stale temporary dirs; returns what was removed."""
    removed = []
    dirs = checkpoint_dirs(output_dir)
    for old in dirs[: max(len(dirs) - keep_last, 0)]:
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def clean_stale_tmp(output_dir: Path) -> None:
    """Remove temporary checkpoint dirs left by a run killed mid-save."""
    output_dir = Path(output_dir)
    if output_dir.is_dir():
        for p in output_dir.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
