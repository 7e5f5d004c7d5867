"""Checkpoint bookkeeping: atomic publish, keep-last-M, stale temp dirs, state round trip."""

from pathlib import Path

import pytest

from vla_dipole.training.checkpoint import (
    STATE_FILE,
    TrainerState,
    clean_stale_tmp,
    latest_checkpoint,
    save_checkpoint,
)


def _save(out: Path, index: int, keep: int = 2, fail: bool = False) -> Path:
    def write(d: Path) -> None:
        (d / "weights.bin").write_bytes(bytes([index % 256]) * 16)
        if fail:
            raise RuntimeError("killed mid-save")

    state = TrainerState(step=index, samples_seen=index * 4)
    return save_checkpoint(out, index, state, write, is_main=True, barrier=lambda: None, keep_last=keep)


def test_keep_last_and_latest(tmp_path: Path) -> None:
    for i in (1, 2, 3, 4):
        _save(tmp_path, i)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-00000003", "checkpoint-00000004"]
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "checkpoint-00000004"
    state = TrainerState.from_file(latest / STATE_FILE)
    assert (state.step, state.samples_seen) == (4, 16)
    assert (latest / "weights.bin").read_bytes() == bytes([4]) * 16


def test_interrupted_save_leaves_previous_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    with pytest.raises(RuntimeError):
        _save(tmp_path, 2, fail=True)
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "checkpoint-00000001"  # the half-written one is invisible
    assert any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    clean_stale_tmp(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-00000001"]


def test_bad_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=STATE_FILE):
        TrainerState.from_file(tmp_path / STATE_FILE)
