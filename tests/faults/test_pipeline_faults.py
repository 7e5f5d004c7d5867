"""Shard building, evaluation and submission validation under faults: kill -9, a full disk, SIGTERM,
damaged or diverged policy directories and hostile pickles, through the real CLIs."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import time
from pathlib import Path

import torch

from data_prep.validate import validate
from navsim_adapter.evaluation.records import read_records
from vla_dipole.model.policy import HEADS_FILE, DipolePolicy

from .conftest import ENV, REPO, run


def _build_args(root: Path, out: Path, workers: int = 2) -> list[str]:
    return [
        "-m",
        "data_prep.build_shards",
        "--data-root",
        str(root),
        "--split",
        "train",
        "--out",
        str(out),
        "--sources",
        "perturb",
        "--num-candidates",
        "4",
        "--image-size",
        "64x36",
        "--shard-size",
        "8",
        "--workers",
        str(workers),
    ]


def _eval_args(policy: Path, root: Path, out: Path, scenes: int = 2) -> list[str]:
    return [
        "-m",
        "navsim_adapter.evaluation.evaluate",
        "--checkpoint",
        str(policy),
        "--data-root",
        str(root),
        "--split",
        "test",
        "--omega",
        "0",
        "--steps",
        "2",
        "--max-scenes",
        str(scenes),
        "--worst-k",
        "0",
        "--frame-interval",
        "4",
        "--out",
        str(out),
    ]


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out += [int(c) for c in children]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_kill_9_of_build_shards_takes_its_pool_workers_along(synthetic_root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, *_build_args(synthetic_root, tmp_path / "shards")],
        cwd=REPO,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, workers = time.time() + 120, []
        while time.time() < deadline and proc.poll() is None:
            # the pool's workers (the spawn resource tracker is a child too, and exits by itself)
            workers = [
                c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()
            ]
            if len(workers) == 2:
                break
            time.sleep(0.1)
        assert len(workers) == 2, "the build finished before its workers could be seen"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "pool workers outlived the killed build"


def test_disk_full_while_writing_a_shard_then_the_same_command_completes(
    synthetic_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shards"
    full = run(_build_args(synthetic_root, out, workers=1), fsize=45_000)  # a shard of 8 scenes: ~51 kB
    assert full.returncode != 0 and "File too large" in full.stderr
    assert not (out / "manifest.json").exists()
    assert list(out.glob("*.tar.tmp")) and not list(out.glob("*.tar"))  # no partial shard under a final name
    proc = run(_build_args(synthetic_root, out, workers=1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = validate(out, progress=False)
    assert report.ok, report.problems


def test_damaged_heads_file_is_named_at_evaluation(
    tiny_bc_policy: Path, synthetic_root: Path, tmp_path: Path
):
    for name, damage in (
        ("truncated", lambda b: b[: len(b) // 2]),
        ("garbled", lambda b: b[:-64] + b"\x13" * 64),  # tensor bytes: the header still parses
    ):
        policy = tmp_path / name
        shutil.copytree(tiny_bc_policy, policy)
        heads = policy / HEADS_FILE
        heads.write_bytes(damage(heads.read_bytes()))
        proc = run(_eval_args(policy, synthetic_root, tmp_path / f"eval-{name}"))
        assert proc.returncode != 0
        assert f"{heads}: " in proc.stderr, proc.stderr[-2000:]
        assert (
            "unreadable safetensors" if name == "truncated" else "differ from the checksum"
        ) in proc.stderr


def test_evaluation_exits_non_zero_when_an_agent_has_no_valid_token(
    tiny_bc_policy: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    """Finite but huge weights: every sampled trajectory overflows, every token is invalid."""
    policy = DipolePolicy.from_pretrained(tiny_bc_policy)
    with torch.no_grad():
        policy.head_pos.out.weight.mul_(1e30)
        policy.head_pos.out.bias.fill_(1e30)
    policy.save_pretrained(tmp_path / "diverged")
    shutil.copy(tiny_bc_policy / "training_meta.json", tmp_path / "diverged")
    proc = run(_eval_args(tmp_path / "diverged", synthetic_root, tmp_path / "eval"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "no valid token for ['dipole@omega=0']" in proc.stderr
    assert "trajectory not finite" in proc.stderr
    assert (tmp_path / "eval" / "summary.md").is_file()  # the report is still written


def test_sigterm_mid_evaluation_keeps_whole_records_and_resumes(
    tiny_bc_policy: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    out = tmp_path / "eval"
    args = _eval_args(tiny_bc_policy, synthetic_root, out, scenes=6)
    proc = subprocess.Popen(
        [sys.executable, *args, "--batch-size", "1"],
        cwd=REPO,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    records = out / "records.jsonl"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if records.is_file() and records.read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the evaluator finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
    finally:
        proc.wait()
    assert proc.returncode != 0
    partial = read_records([records])
    assert partial and all(r["token"] for r in partial)
    done = run([*args, "--batch-size", "1"])
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = read_records([records])
    keys = [(r["row"], r["token"]) for r in resumed]
    assert len(keys) == len(set(keys)) == 6 * 3 and resumed[: len(partial)] == partial


def test_hostile_submission_pickle_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "submission.pkl"
    path.write_bytes(pickle.dumps({"team_name": "T", "predictions": [{"tok": Evil()}]}))
    proc = run(["-m", "navsim_adapter.evaluation.submission", "--validate", str(path)])
    assert proc.returncode != 0 and not marker.exists()
    assert f"{path}: refers to posix.system" in proc.stderr and "--pickle-may-execute-code" in proc.stderr
    proc = run(["-m", "navsim_adapter.evaluation.score", "--split", "test", "--trajectories", str(path)])
    assert proc.returncode != 0 and not marker.exists() and "not an .npz file" in proc.stderr
