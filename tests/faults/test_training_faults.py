"""train.py on damaged shards and checkpoints, a full disk and config mistakes: every fault is refused by
name or skipped and counted; no run ends with exit 0 and non-finite weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data_prep.validate import validate
from vla_dipole.data import shard_format
from vla_dipole.model.policy import DipolePolicy
from vla_dipole.training.indexed_data import IndexedShards

from .conftest import field_offset, finite_float32, first_shard, member, overwrite, run, train_args


def _one_line_error(proc, code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    err = proc.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in err, err
    return err


def test_garbage_in_arrays_refused_naming_the_shard(shards: Path, tmp_path: Path) -> None:
    shard = first_shard(shards)
    _, offset = field_offset(shard, 3, "human")
    overwrite(shard, offset, b"\xff\x7f\x00\x13garbage!")
    proc = run(train_args(shards, tmp_path / "run"))
    _one_line_error(proc, 1, "DamagedShardError", str(shard), "sha256", "data.on_damaged=skip")
    assert not (tmp_path / "run" / "policy").exists()


def test_skip_trains_on_the_rest_and_records_the_count(shards: Path, tmp_path: Path) -> None:
    shard = first_shard(shards)
    key, offset, _ = member(shard, 5, "cam_f0_h0.jpg")
    overwrite(shard, offset + 400, b"\x00garbage in the entropy-coded data\x00")
    out = tmp_path / "run"
    proc = run(train_args(shards, out, **{"data.on_damaged": "skip"}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skipped 16 of 32 samples in 1 damaged shards: {shard}" in proc.stdout
    record = json.loads((out / "data_integrity.json").read_text())["0"]
    assert record["samples"] == 16 and record["skipped_samples"] == 16
    assert list(record["skipped_shards"]) == [str(shard)]
    policy = DipolePolicy.from_pretrained(out / "policy")
    assert all(torch.isfinite(p).all() for p in policy.parameters())


def test_garbled_npy_header_is_a_sample_format_error_in_validate_and_training(
    shards: Path, tmp_path: Path
) -> None:
    shard = first_shard(shards)
    key, offset, _ = member(shard, 2, shard_format.ARRAYS_MEMBER)
    overwrite(shard, offset + 12, b"{'descr': '<f4, 'shape")  # an unterminated string literal
    report = validate(shards, progress=False)
    assert any(
        f"{shard} sample {key}: undecodable member arrays.npy: garbled .npy header" in p
        for p in report.problems
    )
    assert any("sha256" in p for p in report.problems)
    # without the sha256 check the sample itself is named when training reaches it
    proc = run(train_args(shards, tmp_path / "run", **{"data.verify": False, "schedule.total_samples": 64}))
    _one_line_error(proc, 1, "SampleFormatError", f"shard {shard} sample {key}", "garbled .npy header")


def test_non_finite_loss_stops_before_the_step_and_nothing_is_exported(shards: Path, tmp_path: Path) -> None:
    """Huge but finite values (what garbage bytes in float data look like) pass the decoder's finiteness
    check; the loss overflows and training stops before stepping on it."""
    shard = first_shard(shards)
    for i in range(16):
        _, offset = field_offset(shard, i, "human")
        overwrite(shard, offset, finite_float32(24, 3.0e38))
    out = tmp_path / "run"
    proc = run(train_args(shards, out, **{"data.verify": False}))
    _one_line_error(proc, 1, "NonFiniteError", "non-finite", "not stepping on it")
    assert not (out / "policy").exists()


def test_truncated_checkpoint_resume_uses_the_newest_intact_one(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = train_args(shards, out)
    assert run(args).returncode == 0
    damaged = out / "checkpoint-00000004" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    proc = run(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{damaged} has 1000 bytes" in proc.stdout
    assert f"resuming from {out / 'checkpoint-00000002'}" in proc.stdout
    again = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert again == losses  # steps 3-4 retrained from the intact checkpoint, bit for bit
    # every checkpoint damaged: refused, each named
    for ckpt in out.glob("checkpoint-*"):
        (ckpt / "optimizer.bin").write_bytes(b"\x00" * 10)
    _one_line_error(run(args), 1, "DamagedCheckpointError", "checkpoint-00000002", "checkpoint-00000004")


def test_disk_full_while_checkpointing_leaves_no_partial_checkpoint(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = train_args(shards, out)
    full = run(args, fsize=4 << 20)  # the model file fits, the optimizer state does not
    assert full.returncode != 0
    assert "File too large" in full.stderr or "file too large" in full.stderr.lower()
    assert not list(out.glob("checkpoint-*")) and not (out / "policy").exists()
    assert list(out.glob(".tmp-checkpoint-*"))  # the half-written one is still under its temporary name
    proc = run(args)  # space again: the same command cleans up and completes
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(out.glob(".tmp-checkpoint-*")) and (out / "policy").is_dir()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.weight_decy=0.1", "did you mean 'weight_decay'"),
        ("schedule.global_batch=many", "field 'schedule.global_batch' expected int"),
        ("data.on_damaged=ignore", "'data.on_damaged': expected one of ('refuse', 'skip')"),
    ],
)
def test_config_mistake_is_one_line_and_exit_code_2(shards: Path, tmp_path: Path, override, needle) -> None:
    proc = run([*train_args(shards, tmp_path / "run"), override])
    err = _one_line_error(proc, 2, needle)
    assert err.startswith("train.py: config error:") and len(proc.stderr.strip().splitlines()) == 1


def test_indexed_shards_default_refuses_and_skip_counts(shards: Path) -> None:
    shard = first_shard(shards)
    overwrite(shard, 2000, b"\x01")
    with pytest.raises(ValueError, match=f"shard {shard} is damaged: sha256"):
        IndexedShards([shards])
    data = IndexedShards([shards], on_damaged="skip")
    assert len(data) == 16 and data.num_skipped == 16
    assert len(IndexedShards([shards], verify=False)) == 32
