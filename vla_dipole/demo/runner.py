"""Run the demo's stages as a user would type them: each command echoed (and logged) before it runs,
independent ones side by side, a failure naming the stage."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def stage_env(threads: int = 1) -> dict[str, str]:
    """One torch thread per process when stages run side by side: on a busy 2-core machine extra
    threads only spin (measured ~25x slower); a stage that runs alone may use every core."""
    return {
        **os.environ,
        "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }


def _printable(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd).replace(sys.executable, "python")


def run(cmd: list[str], log: Path, threads: int = 1) -> None:
    """Run one stage like a user would, echoing the command; fail loudly naming the stage."""
    run_parallel([cmd], log, jobs=1, threads=threads)


def run_parallel(cmds: list[list[str]], log: Path, jobs: int, threads: int = 1) -> None:
    """Independent stages, `jobs` at a time (one thread each); output of parallel ones goes to files."""
    pending, running = list(cmds), []
    t0 = time.time()
    while pending or running:
        while pending and len(running) < jobs:
            cmd = pending.pop(0)
            printable = _printable(cmd)
            print(f"\n$ {printable}", flush=True)
            with log.open("a") as f:
                f.write(f"\n$ {printable}\n")
            out = None if jobs == 1 else open(f"{log}.{len(cmds) - len(pending)}.out", "w")  # noqa: SIM115
            proc = subprocess.Popen(cmd, cwd=REPO, env=stage_env(threads), stdout=out, stderr=out)
            running.append((proc, printable, out))
        done = [item for item in running if item[0].poll() is not None]
        if not done:
            time.sleep(0.5)
            continue
        proc, printable, out = done[0]
        running.remove((proc, printable, out))
        if out is not None:
            out.close()
        if proc.returncode != 0:
            for other, *_ in running:
                other.terminate()
            hint = f" (output in {out.name})" if out is not None else ""
            raise SystemExit(f"stage failed (exit {proc.returncode}): {printable}{hint}")
        with log.open("a") as f:
            f.write(f"# done: {printable[:80]}... ({time.time() - t0:.0f}s since the batch started)\n")
        print(f"  done in {time.time() - t0:.0f}s: {printable[:100]}", flush=True)
