"""Shard benchmarks (run by `make bench`): build rate on a synthetic split and loader throughput.

    python -m benchmarks.shards [--logs 2] [--limit 48] [--samples 1500] [--train-step-ms 100 --train-batch 8]

Prints two tables: scenes/s and candidates/s of build_shards (1 and 2 workers), and samples/s of
the training data path (IndexedShards) with 0, 1 and 2 workers against the rate the training step consumes
(the loader must be at least 5x faster so it never limits training).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from vla_dipole.data.shard_io import read_manifest
from vla_dipole.tables import format_table


def bench_build(
    data_root: Path, split: str, out: Path, limit: int, workers: int, **kw
) -> tuple[float, float, dict]:
    from data_prep.build_shards import build_shards

    t0 = time.perf_counter()
    manifest = build_shards(data_root, split, out, limit=limit, workers=workers, overwrite=True, **kw)
    dt = time.perf_counter() - t0
    return manifest["num_samples"] / dt, manifest["num_samples"] * manifest["num_candidates"] / dt, manifest


def _sample_stream(out: Path, workers: int, samples: int, batch_size: int):
    """Batches of the training data path (IndexedShards, random order with replacement), as train.py reads."""
    import torch

    from vla_dipole.data.collate import collate
    from vla_dipole.training.indexed_data import IndexedShards

    data = IndexedShards([out])
    sampler = torch.utils.data.RandomSampler(
        data, replacement=True, num_samples=samples, generator=torch.Generator().manual_seed(0)
    )
    return iter(
        torch.utils.data.DataLoader(
            data, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate
        )
    )


def bench_loader(out: Path, workers: int, samples: int, batch_size: int = 8) -> float:
    """Steady-state samples/s of the training data path (first batch, i.e. worker start-up, excluded)."""
    it = _sample_stream(out, workers, samples, batch_size)
    first = next(it)
    t0, n = time.perf_counter(), 0
    for batch in it:
        n += len(batch["token"])
    del first
    return n / max(time.perf_counter() - t0, 1e-9)


def bench_loader_cpu(out: Path, samples: int, batch_size: int = 8) -> float:
    """Samples per CPU-second with 0 workers: what one free core delivers, independent of machine load."""
    it = _sample_stream(out, 0, samples, batch_size)
    next(it)
    t0, n = time.process_time(), 0
    for batch in it:
        n += len(batch["token"])
    return n / max(time.process_time() - t0, 1e-9)


def measure_train_step(out: Path, batch_size: int, preset: str = "tiny", steps: int = 2) -> float | None:
    """Median wall time [s] of one DIPOLE training step (encode, both branch errors, backward, AdamW)
    of the `preset` policy on a batch of these shards; None if the model package is unavailable."""
    try:
        import torch

        from vla_dipole.model.policy import DipolePolicy
        from vla_dipole.training.indexed_data import read_batch
    except ImportError:
        return None
    policy = DipolePolicy.from_config(preset).train()
    batch = read_batch(out, batch_size)
    policy.set_trajectory_stats(read_manifest(out)["traj_stats"])
    optim = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-4)
    actions = policy.processor.trajectory_to_actions(batch["candidates"])
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        err_pos, err_neg = policy.branch_errors(policy.encode(batch), actions)
        (err_pos.mean() + err_neg.mean()).backward()
        optim.step()
        optim.zero_grad()
        times.append(time.perf_counter() - t0)
    return float(sorted(times[1:])[len(times[1:]) // 2])


def main(argv: Sequence[str] | None = None) -> None:
    from data_prep.synthesize import synthesize

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", type=int, default=2)
    p.add_argument("--limit", type=int, default=48, help="scenes to build")
    p.add_argument("--samples", type=int, default=1500, help="samples streamed per loader measurement")
    p.add_argument("--image-size", default="224x224")
    p.add_argument(
        "--train-step-ms",
        type=float,
        default=None,
        help="training step time to compare against (default: measure the tiny model's step here)",
    )
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)
    root = Path(a.workdir or tempfile.mkdtemp(prefix="data_bench_"))
    split = "bench"
    synthesize(root / "data", split, a.logs, 0)
    rows = []
    out = root / "shards"
    for workers in (1, 2):
        scenes_s, cands_s, manifest = bench_build(
            root / "data",
            split,
            out,
            a.limit,
            workers,
            sources=("vocab", "perturb"),
            num_candidates=8,
            image_size=a.image_size,
            shard_size=max(a.limit // 4, 1),
        )
        rows.append(
            (
                workers,
                manifest["num_samples"],
                manifest["num_candidates"],
                scenes_s,
                cands_s,
            )
        )
    print(
        format_table(
            ("workers", "scenes", "K", "scenes/s", "candidates/s"),
            rows,
            title="build_shards (synthetic split, vocab+perturb, PDM-scored)",
            formats=["", "", "", ".2f", ".1f"],
        )
    )
    step_s = a.train_step_ms / 1000.0 if a.train_step_ms else measure_train_step(out, a.train_batch)
    how = "given" if a.train_step_ms else "measured, tiny model"
    if step_s is None:
        step_s, how = 0.1, "assumed"
    need = a.train_batch / step_s
    rows = []
    for workers in (0, 1, 2):
        rate = bench_loader(out, workers, a.samples, a.train_batch)
        rows.append((workers, "wall", rate, f"{rate / need:.1f}x", "ok" if rate >= 5 * need else "TOO SLOW"))
    cpu_rate = bench_loader_cpu(out, a.samples, a.train_batch)
    rows.append((0, "per CPU-s", cpu_rate, "", ""))
    print()
    print(
        format_table(
            ("workers", "clock", "samples/s", "vs train", "status"),
            rows,
            title=f"loader ({a.image_size} JPEG, batch {a.train_batch}; training step {step_s * 1000:.0f} ms ({how}) "
            f"consumes {need:.1f} samples/s; target >= 5x; load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} cores)",
            formats=["", "", ".0f", "", ""],
        )
    )


if __name__ == "__main__":
    main()
