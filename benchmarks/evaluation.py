"""Evaluator throughput: scenes per second for one omega vs an 8-omega sweep, with a per-stage split.

    python -m benchmarks.evaluation [--checkpoint C --data-root D --split S] [--scenes 16] [--steps N]

Without `--data-root` a small synthetic split is generated in a temp dir; without `--checkpoint` an
untrained `tiny` policy is saved there (speed does not depend on the weights). Each case is a fresh
`Evaluator` run (no resume) over the same scenes; stages: `prepare` (scene + scoring context +
observation), `policy` (backbone once per scene + both heads for all omegas), `score` (one PDM call
per batch for every row: constant velocity, human and each omega).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from navsim_adapter.evaluation.evaluate import EvalSettings, Evaluator
from vla_dipole import tables
from vla_dipole.inference import OBSERVATION_FILE, set_threads

SWEEP = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
BENCH_IMAGE_SIZE = (64, 36)


def _world(tmp: Path) -> tuple[Path, str]:
    from data_prep.synthesize import synthesize

    synthesize(
        tmp / "data",
        "bench",
        2,
        seed=0,
        frames_per_log=24,
        image_size=(128, 72),
        cameras=("CAM_F0",),
        workers=1,
        progress=False,
    )
    return tmp / "data", "bench"


def _tiny_checkpoint(tmp: Path) -> Path:
    from vla_dipole.model.policy import DipolePolicy

    path = DipolePolicy.from_config("tiny").save_pretrained(tmp / "tiny_policy")
    (path / OBSERVATION_FILE).write_text(json.dumps({"image_size": list(BENCH_IMAGE_SIZE)}))
    return path


def run(
    checkpoint: Path, data_root: Path, split: str, scenes: int, steps: int | None, batch_size: int, out: Path
) -> list[dict]:
    """One row per case: omegas, scenes, seconds, scenes/s and seconds per stage."""
    rows = []
    for case, omegas in (("1 omega", (1.0,)), ("8-omega sweep", SWEEP)):
        settings = EvalSettings(
            data_root=data_root,
            split=split,
            out=out / case.replace(" ", "_"),
            checkpoint=checkpoint,
            omegas=omegas,
            steps=steps,
            batch_size=batch_size,
            max_scenes=scenes,
            frame_interval=1,
            worst_k=0,
        )
        ev = Evaluator(settings)
        ev.evaluate_tokens(ev.loader.tokens[:1])  # warm-up (lazy imports, first allocations)
        ev.timings = dict.fromkeys(ev.timings, 0.0)
        start = time.perf_counter()
        ev.run()
        seconds = time.perf_counter() - start
        n = len(ev.loader)
        rows.append(
            {
                "case": case,
                "omegas": len(omegas),
                "scenes": n,
                "seconds": seconds,
                "scenes_per_s": n / seconds,
                "trajectories_per_s": n * (len(omegas) + 2) / seconds,
                **ev.timings,
            }
        )
    return rows


# row key -> (column, number format)
COLUMNS = {
    "case": ("case", ""),
    "omegas": ("omegas", ""),
    "scenes": ("scenes", ""),
    "seconds": ("total s", ".2f"),
    "scenes_per_s": ("scenes/s", ".2f"),
    "trajectories_per_s": ("trajs/s", ".1f"),
    "prepare": ("prepare s", ".2f"),
    "policy": ("policy s", ".2f"),
    "score": ("score s", ".2f"),
}


def print_table(rows: Sequence[dict]) -> None:
    header, formats = zip(*COLUMNS.values(), strict=True)
    print(tables.format_table(header, [[r[k] for k in COLUMNS] for r in rows], formats=formats))


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluation", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="default: an untrained tiny policy")
    p.add_argument("--data-root", type=Path, default=None, help="default: a generated 2-log synthetic split")
    p.add_argument("--split", default=None)
    p.add_argument("--scenes", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = p.parse_args(argv)
    set_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        tmp = Path(tmp)
        data_root, split = (a.data_root, a.split) if a.data_root else _world(tmp)
        if split is None:
            raise SystemExit("--split is required with --data-root")
        checkpoint = a.checkpoint or _tiny_checkpoint(tmp)
        rows = run(checkpoint, data_root, split, a.scenes, a.steps, a.batch_size, tmp / "out")
    print(
        f"evaluator, checkpoint {'tiny (untrained)' if a.checkpoint is None else a.checkpoint}, "
        f"batch {a.batch_size}, {a.threads} torch thread(s), steps {a.steps or 'checkpoint default'}"
    )
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
