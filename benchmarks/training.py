"""Training throughput of the tiny preset: 1 process, 2 processes ZeRO-2 / ZeRO-3, with / without the
frozen-backbone feature cache. Runs the real `train.py` (plain python or `accelerate launch`) on
synthetic shards and prints steady-state samples/s (median over steps, the first step excluded).

    python -m benchmarks.training [--samples 64] [--global-batch 8] [--micro-batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from vla_dipole.training.synthetic_shards import write_shards

REPO = Path(__file__).resolve().parents[1]
SETUPS = (
    ("1 process", None, {}),
    ("1 process + feature cache", None, {"feature_cache.enabled": True}),
    ("2 processes ZeRO-2", "configs/accelerate/cpu_2proc_zero2.yaml", {}),
    ("2 processes ZeRO-3", "configs/accelerate/cpu_2proc_zero3.yaml", {}),
    (
        "2 processes ZeRO-2 + feature cache",
        "configs/accelerate/cpu_2proc_zero2.yaml",
        {"feature_cache.enabled": True},
    ),
)


def run(shards: Path, out: Path, launch: str | None, extra: dict, args: argparse.Namespace) -> dict:
    overrides = {
        "model": "tiny",
        "data.shards": shards,
        "output_dir": out,
        "schedule.total_samples": args.samples,
        "schedule.global_batch": args.global_batch,
        "schedule.micro_batch": args.micro_batch,
        "schedule.warmup_samples": 0,
        "checkpoint.every_samples": 10**9,
        "logging.progress": False,
        "logging.tensorboard": False,
        "stage": args.stage,
        **extra,
    }
    train = [str(REPO / "vla_dipole" / "train.py"), *(f"{k}={v}" for k, v in overrides.items())]
    if launch:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / launch)]
        cmd += ["--num_cpu_threads_per_process", str(args.threads), *train]
    else:
        cmd = [sys.executable, *train]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "DS_BUILD_OPS": "0", "PYTHONWARNINGS": "ignore"}
    env["OMP_NUM_THREADS"] = str(args.threads)  # per process, as --num_cpu_threads_per_process
    env.pop("ACCELERATE_USE_CPU", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stdout + proc.stderr).strip().splitlines()[-1][:120], "wall": wall}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [m["samples_per_s"] for m in metrics[1:]] or [metrics[0]["samples_per_s"]]
    return {"samples_per_s": statistics.median(rates), "wall": wall, "steps": len(metrics)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--stage", default="bc", choices=("bc", "dipole", "awr"))
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    args = parser.parse_args(list(argv) if argv is not None else None)
    with tempfile.TemporaryDirectory(prefix="vla_dipole_train_bench_") as tmp:
        shards = write_shards(Path(tmp) / "shards", num_samples=64, k=4)
        print(
            f"tiny preset, stage={args.stage}, {args.samples} samples, global batch {args.global_batch}, "
            f"micro batch {args.micro_batch}, {os.cpu_count()} CPU cores"
        )
        print(f"{'setup':<38} {'samples/s':>10} {'steps':>6} {'wall s':>8}")
        for i, (name, launch, extra) in enumerate(SETUPS):
            res = run(shards, Path(tmp) / f"run{i}", launch, extra, args)
            if "error" in res:
                print(f"{name:<38} {'failed':>10} {'':>6} {res['wall']:>8.1f}  {res['error']}")
            else:
                print(
                    f"{name:<38} {res['samples_per_s']:>10.2f} {res['steps']:>6d} {res['wall']:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
