"""Submit real jobs to a real (local, single-node) SLURM: prep array, tiny training, USR1 preemption."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TRAIN_OVERRIDES = [
    "model=tiny",
    "schedule.global_batch=8",
    "schedule.micro_batch=8",
    "schedule.warmup_samples=16",
    "logging.progress=false",
]


def _submit(cluster, args: list[str]) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "slurm.submit", *args],
        capture_output=True,
        text=True,
        env=cluster.env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = dict(
        line.removeprefix("submitted ").split(": job ")
        for line in proc.stdout.splitlines()
        if line.startswith("submitted ")
    )
    assert ids, proc.stdout
    return ids


def _submit_train(cluster, run_dir: Path, shards: Path, *overrides: str) -> dict[str, str]:
    """A CPU training job (tiny BC) on the shared shards, with extra train.py overrides."""
    args = ["train", "--run-dir", str(run_dir), "--gpus-per-node", "0", "--cpus-per-task", "2"]
    return _submit(cluster, [*args, "--shards", str(shards), "stage=bc", *overrides, *TRAIN_OVERRIDES])


def _submit_prep(cluster, run_dir: Path, data_root: Path, shard_size: int, *extra: str) -> dict[str, str]:
    """A 2-task prep array (+ merge) over the train split, tiny images and 2 perturbation candidates."""
    build = f"--sources perturb --num-candidates 2 --image-size 32x18 --shard-size {shard_size} --frame-interval 4"
    args = ["prep", "--run-dir", str(run_dir), "--num-parts", "2", "--cpus-per-task", "1"]
    return _submit(
        cluster, [*args, "--data-root", str(data_root), "--split", "train", *extra, "--prep-args", build]
    )


def _logs(run_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((run_dir / "logs").glob("*.out")))


def _metrics(train_dir: Path) -> list[dict]:
    return [
        json.loads(line) for line in (train_dir / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]


def test_prep_array_builds_one_merged_manifest(slurm_cluster, synthetic_root, tmp_path):
    run_dir = tmp_path / "prep"
    ids = _submit_prep(slurm_cluster, run_dir, synthetic_root, 8)
    info = slurm_cluster.wait(ids["prep_merge"], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=600)
    assert info["JobState"] == "COMPLETED", _logs(run_dir)
    manifest = json.loads((run_dir / "shards" / "manifest.json").read_text())
    shards = sorted(p.name for p in (run_dir / "shards").glob("train-*.tar"))
    assert len(shards) >= 2, "the array should have produced several shards"
    listed = manifest["shards"] if isinstance(manifest["shards"], list) else list(manifest["shards"])
    names = sorted(Path(s["name"] if isinstance(s, dict) else s).name for s in listed)
    assert names == shards
    # both array tasks did work (interleaved parts), and the merged build is valid
    out = subprocess.run(
        [sys.executable, "-m", "data_prep.validate", str(run_dir / "shards")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_tiny_training_job_completes_with_checkpoint(slurm_cluster, synthetic_shards, tmp_path):
    run_dir = tmp_path / "train"
    ids = _submit_train(slurm_cluster, run_dir, synthetic_shards, "schedule.total_samples=64")
    info = slurm_cluster.wait(ids["train"], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=600)
    assert info["JobState"] == "COMPLETED", _logs(run_dir)
    assert (run_dir / "train" / "policy").is_dir(), _logs(run_dir)
    assert (run_dir / "slurm" / "train.sbatch").exists(), "rendered script must be kept in the run dir"
    assert _metrics(run_dir / "train")[-1]["samples"] == 64


def test_usr1_checkpoints_requeues_and_resumes_without_lost_samples(
    slurm_cluster, synthetic_shards, tmp_path
):
    total = 480
    run_dir = tmp_path / "preempt"
    ids = _submit_train(
        slurm_cluster,
        run_dir,
        synthetic_shards,
        f"schedule.total_samples={total}",
        "checkpoint.every_samples=100000",
    )
    job = ids["train"]
    metrics = run_dir / "train" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.5)
    assert metrics.exists(), "training never started: " + _logs(run_dir)
    subprocess.run(["scancel", "--signal=USR1", job], check=True, env=slurm_cluster.env)
    # wait until the job has been requeued, then skip SLURM's fixed requeue delay (test-only)
    deadline = time.time() + 300
    while time.time() < deadline and int(slurm_cluster.job_state(job).get("Restarts", "0")) < 1:
        time.sleep(1)
    assert int(slurm_cluster.job_state(job).get("Restarts", "0")) >= 1, _logs(run_dir)
    # the requeued job is pending behind SLURM's fixed requeue delay: let it start now (test-only)
    deadline = time.time() + 120
    while time.time() < deadline and slurm_cluster.job_state(job).get("JobState") != "PENDING":
        time.sleep(0.5)
    # slurmd revoked the first run's credential at requeue, with one-second resolution: a new start in the
    # same second is refused ("Job credential revoked") and the job fails, so start it two seconds later
    time.sleep(2.0)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm_cluster.env)
    info = slurm_cluster.wait(
        job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=600, stable_for=5.0
    )
    logs = _logs(run_dir)
    assert info["JobState"] == "COMPLETED", logs
    assert "preempted: checkpoint written, requeueing" in logs
    rows = _metrics(run_dir / "train")
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), "steps repeated or lost across the requeue"
    assert rows[-1]["samples"] == total
    assert (run_dir / "train" / "policy").is_dir()
