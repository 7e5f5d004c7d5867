"""`make demo`: the whole vla-dipole pipeline on the built-in synthetic NAVSIM world.

synthesize (train + held-out test split) -> scored shards -> BC (tiny preset) -> DIPOLE with an
online round -> AWR baseline -> PDM-score evaluation on the test split at several omegas.
Each stage is run as the command a user would type (printed before it runs), so the demo doubles
as a tour of the CLI. Re-running skips or resumes finished stages.

    python -m data_prep.demo --out demo_out [--scale small|demo]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoScale:
    train_logs: int
    test_logs: int
    frames: int
    candidates: str
    bc_samples: int
    dipole_samples: int
    round_samples: int
    omegas: str
    max_test_scenes: int | None


SCALES = {
    # the test suite's configuration (tests/demo): minutes on 2 cores
    "small": DemoScale(train_logs=8, test_logs=4, frames=40, candidates="vocab:8,perturb:8", bc_samples=2048,
                       dipole_samples=2048, round_samples=1024, omegas="0,1,2", max_test_scenes=48),
    # `make demo`: at most ~15 minutes on 2 cores
    "demo": DemoScale(train_logs=20, test_logs=8, frames=48, candidates="vocab:12,perturb:12", bc_samples=6144,
                      dipole_samples=6144, round_samples=2048, omegas="0,0.5,1,2,4", max_test_scenes=None),
}


def run(cmd: list[str], log: Path) -> None:
    """Run one stage like a user would, echoing the command; fail loudly with the log's tail."""
    printable = " ".join(shlex.quote(c) for c in cmd).replace(sys.executable, "python")
    print(f"\n$ {printable}", flush=True)
    t0 = time.time()
    env = {**os.environ, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"), "TOKENIZERS_PARALLELISM": "false"}
    with log.open("a") as f:
        f.write(f"\n$ {printable}\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=None, stderr=None)
    if proc.returncode != 0:
        raise SystemExit(f"stage failed (exit {proc.returncode}): {printable}")
    print(f"  done in {time.time() - t0:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m data_prep.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--scale", choices=sorted(SCALES), default="demo")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    s = SCALES[a.scale]
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "demo_commands.log"
    py = sys.executable
    data, shards, runs, ev = out / "data", out / "shards", out / "runs", out / "eval"
    t_start = time.time()

    for split, logs, seed in (("train", s.train_logs, a.seed), ("test", s.test_logs, a.seed + 1000)):
        if not (data / "navsim_logs" / split).exists() or len(list((data / "navsim_logs" / split).glob("*.pkl"))) < logs:
            run([py, "-m", "data_prep.synthesize", "--out", str(data), "--split", split, "--logs", str(logs),
                 "--seed", str(seed), "--frames", str(s.frames)], log)
    # a picture of a few training scenes (BEV + front camera)
    if not (out / "scenes").exists():
        (out / "scenes").mkdir()
        from navsim_adapter.scene_loader import SceneLoader

        tokens = SceneLoader("train", data_root=data).tokens
        for t in tokens[:: max(1, len(tokens) // 3)][:3]:
            run([py, "-m", "navsim_adapter.visualize", "--data-root", str(data), "--split", "train", "--token", t,
                 "--out", str(out / "scenes" / f"{t}.png")], log)
    if not (shards / "manifest.json").exists():
        run([py, "-m", "data_prep.vocabulary", "--data-root", str(data), "--split", "train", "--size", "64",
             "--out", str(out / "vocabulary")], log)
        run([py, "-m", "data_prep.build_shards", "--data-root", str(data), "--split", "train", "--out", str(shards),
             "--sources", "vocab,perturb", "--num-candidates", s.candidates, "--vocabulary", str(out / "vocabulary"),
             "--shard-size", "64", "--seed", str(a.seed)], log)
        run([py, "-m", "data_prep.validate", str(shards)], log)

    train = [py, "vla_dipole/train.py", "model=tiny", f"data.shards={shards}", f"seed={a.seed}"]
    run([*train, "stage=bc", f"output_dir={runs / 'bc'}", f"schedule.total_samples={s.bc_samples}"], log)
    run([*train, "stage=dipole", f"output_dir={runs / 'dipole'}", f"init_from={runs / 'bc' / 'policy'}",
         f"schedule.total_samples={s.dipole_samples}", "dipole.rounds=1", f"dipole.round_samples={s.round_samples}"], log)
    run([*train, "stage=awr", f"output_dir={runs / 'awr'}", f"init_from={runs / 'bc' / 'policy'}",
         f"schedule.total_samples={s.dipole_samples}"], log)

    evaluate = [py, "-m", "navsim_adapter.evaluate", "--checkpoint", str(runs / "dipole" / "policy"),
                "--bc-checkpoint", str(runs / "bc" / "policy"), "--compare", f"awr={runs / 'awr' / 'policy'}",
                "--data-root", str(data), "--split", "test", "--omega", s.omegas, "--out", str(ev),
                "--seed", str(a.seed)]
    if s.max_test_scenes:
        evaluate += ["--max-scenes", str(s.max_test_scenes)]
    run(evaluate, log)
    summary = json.loads((ev / "summary.json").read_text())
    print(f"\nvla-dipole demo finished in {(time.time() - t_start) / 60:.1f} min. Outputs in {out}:")
    print(f"  summary table  {ev / 'summary.md'}\n  omega curve    {ev / 'omega_curve.png'}\n"
          f"  worst scenes   {ev / 'worst'}/\n  scene pictures {out / 'scenes'}/\n  commands       {log}")
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return ev / "summary.json"


if __name__ == "__main__":
    main()
