"""Submit vla-dipole stages to SLURM: `python -m slurm.submit {prep,train,eval,pipeline} [options] [overrides]`.

Scripts are rendered into `<run-dir>/slurm/` (kept for reproducibility) and submitted with `sbatch`;
`pipeline` chains prep -> merge -> train -> eval -> merge with `--dependency=afterok`. `--dry-run`
prints the scripts instead of submitting. Positional `key=value` overrides go to `vla_dipole/train.py`.

Multi-node training runs one task per node, each calling `accelerate launch` with its
`--machine_rank $SLURM_NODEID` (accelerate then starts one worker per GPU). We chose this over
DeepSpeed's own pdsh launcher because it needs nothing but `srun` (no passwordless ssh / pdsh /
hostfile, which many clusters forbid), and SLURM keeps tracking and signalling every process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from slurm.render import render

REPO_DIR = Path(__file__).resolve().parents[1]
NAVSIM_ENV_VARS = (
    "OPENSCENE_DATA_ROOT",
    "NUPLAN_MAPS_ROOT",
    "NUPLAN_MAP_VERSION",
    "NAVSIM_EXP_ROOT",
    "NAVSIM_DEVKIT_ROOT",
)
STAGES = ("prep", "train", "eval", "pipeline")


def default_accelerate_config(nodes: int, gpus_per_node: int) -> str:
    """CPU jobs run one process; GPU jobs use the DeepSpeed accelerate configs (multi-node one when nodes > 1)."""
    if gpus_per_node == 0:
        return "configs/accelerate/cpu_1proc.yaml"
    if nodes > 1:
        return "configs/accelerate/multinode.yaml"
    return "configs/accelerate/gpu_1.yaml" if gpus_per_node == 1 else "configs/accelerate/gpu_multi.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m slurm.submit", description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--nodes", type=int, default=1, help="training nodes")
    p.add_argument("--gpus-per-node", type=int, default=0, help="0 = CPU job")
    p.add_argument("--cpus-per-task", type=int, default=None, help="default: 8 per GPU, or 2 on CPU jobs")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--qos", default=None)
    p.add_argument("--time", default="04:00:00", help="per job, SLURM format")
    p.add_argument("--signal-seconds", type=int, default=300, help="preemption warning before the time limit")
    p.add_argument("--run-dir", type=Path, default=None, help="default: runs/<stage>-<timestamp>")
    p.add_argument("--venv", type=Path, default=REPO_DIR / ".venv")
    p.add_argument("--accelerate-config", default=None)
    p.add_argument("--data-root", default=None, help="OpenScene root (default $OPENSCENE_DATA_ROOT)")
    p.add_argument("--split", default="mini", help="log split for prep")
    p.add_argument("--eval-split", default=None, help="log split for eval (default: --split)")
    p.add_argument("--num-parts", type=int, default=4, help="array size for prep / eval")
    p.add_argument(
        "--metric-cache",
        default=None,
        help="prep: NAVSIM metric cache of the split (navsim's run_metric_caching.py); real logs need it",
    )
    p.add_argument(
        "--missing-cache",
        default=None,
        choices=("error", "skip"),
        help="prep: a scene the metric cache lacks fails the build (error) or is left out (skip)",
    )
    p.add_argument("--prep-args", default="", help="extra options for data_prep.build_shards")
    p.add_argument("--eval-args", default="", help="extra options for navsim_adapter.evaluation.evaluate")
    p.add_argument("--checkpoint", default=None, help="eval: checkpoint dir (pipeline: the trained one)")
    p.add_argument("--omega", default="0,0.5,1,2,4", help="eval omegas")
    p.add_argument("--shards", default=None, help="train: shard dir (pipeline: the prep output)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("overrides", nargs="*", help="train.py config overrides key=value")
    args = p.parse_intermixed_args(argv)
    for o in args.overrides:
        if "=" not in o:
            p.error(f"override {o!r} is not key=value")
    if args.missing_cache is not None and args.metric_cache is None:
        p.error("--missing-cache needs --metric-cache")
    if args.nodes < 1 or args.gpus_per_node < 0 or args.num_parts < 1:
        p.error("--nodes and --num-parts must be >= 1, --gpus-per-node >= 0")
    return args


_SBATCH_VALUE = re.compile(r"^[\w.:,+@/=%-]+$")


def _sbatch_value(value: object, what: str) -> str:
    """A value written into an `#SBATCH --opt=VALUE` line: sbatch reads those lines itself, not a shell,
    so quoting does not apply; a space or newline could add options or script lines, so it is refused."""
    text = str(value)
    if not _SBATCH_VALUE.match(text):
        raise SystemExit(
            f"{what}={text!r}: only letters, digits and . : , + @ / = % - _ may appear in an #SBATCH value"
        )
    return text


def _quote_args(text: str, what: str) -> str:
    """Extra options given as one string: split like a shell would, then every word quoted, so they
    stay options and never become commands (`;`, `$(...)`, backticks are plain characters)."""
    try:
        return " ".join(shlex.quote(w) for w in shlex.split(text))
    except ValueError as exc:
        raise SystemExit(f"{what}: cannot split {text!r} into options: {exc}") from None


def _sbatch_extra(a: argparse.Namespace, gpus: int) -> str:
    lines = []
    if gpus > 0:
        lines.append(f"#SBATCH --gpus-per-node={gpus}")
    for flag in ("partition", "account", "qos"):
        if getattr(a, flag):
            lines.append(f"#SBATCH --{flag}={_sbatch_value(getattr(a, flag), '--' + flag)}")
    return "\n".join(lines)


def _env_exports(a: argparse.Namespace) -> str:
    env = {k: os.environ[k] for k in NAVSIM_ENV_VARS if os.environ.get(k)}
    if a.data_root:
        env["OPENSCENE_DATA_ROOT"] = str(Path(a.data_root).resolve())
    env.setdefault("DS_ACCELERATOR", "cuda" if a.gpus_per_node > 0 else "cpu")
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))


def _cache_args(a: argparse.Namespace) -> list[str]:
    """build_shards' metric-cache options: the array tasks and the merge job must pass the same ones."""
    if a.metric_cache is None:
        return []
    args = [f"--metric-cache {shlex.quote(str(Path(a.metric_cache).resolve()))}"]
    return args + ([f"--missing-cache {a.missing_cache}"] if a.missing_cache else [])


def render_jobs(a: argparse.Namespace, run_dir: Path) -> list[tuple[str, str, list[str]]]:
    """(name, script text, names it depends on) for every job of the stage, in submission order."""
    cpus = a.cpus_per_task or (8 * a.gpus_per_node if a.gpus_per_node else 2)
    data_root = a.data_root or os.environ.get("OPENSCENE_DATA_ROOT", "")
    q = shlex.quote
    base = {
        "repo_dir": q(str(REPO_DIR)),
        "venv": q(str(a.venv)),
        # in #SBATCH --output lines and in commands: a plain path (no quoting needed) or refused
        "run_dir": _sbatch_value(run_dir, "--run-dir"),
        "time": _sbatch_value(a.time, "--time"),
        "cpus_per_task": cpus,
        "num_parts": a.num_parts,
        "last_part": a.num_parts - 1,
        "split": q(a.split),
    }
    common = render("common.sh", {**base, "env_exports": _env_exports(a)})
    cpu_only = {**base, "common": common, "sbatch_extra": _sbatch_extra(a, 0)}
    shards = a.shards or str(run_dir / "shards")
    checkpoint = a.checkpoint or str(run_dir / "train" / "policy")
    # the shards store what the trained model reads (its preset's observation)
    model = [f"--model {shlex.quote(o.split('=', 1)[1])}" for o in a.overrides if o.startswith("model=")]
    prep_args = " ".join(
        [
            f"--data-root {q(data_root)} --split {q(a.split)}",
            *model,
            *_cache_args(a),
            _quote_args(a.prep_args, "--prep-args"),
        ]
    ).strip()
    eval_split = a.eval_split or a.split
    eval_args = (
        f"--checkpoint {q(checkpoint)} --data-root {q(data_root)} "
        f"--split {q(eval_split)} --omega {q(a.omega)} {_quote_args(a.eval_args, '--eval-args')}"
    ).strip()
    procs = max(a.gpus_per_node, 1)
    shard_override = [f"data.shards={shards}"] if (a.shards or a.stage == "pipeline") else []
    train_args = " ".join(
        shlex.quote(o) for o in [f"output_dir={run_dir / 'train'}", *shard_override, *a.overrides]
    )
    train = {
        **base,
        "common": common,
        "job_name": "vla-dipole-train",
        "nodes": a.nodes,
        "signal_seconds": a.signal_seconds,
        "sbatch_extra": _sbatch_extra(a, a.gpus_per_node),
        "accelerate_config": q(a.accelerate_config or default_accelerate_config(a.nodes, a.gpus_per_node)),
        "procs_per_node": procs,
        "launch_extra": "" if a.gpus_per_node else "--num_cpu_threads_per_process ${SLURM_CPUS_PER_TASK:-1}",
        "train_args": train_args,
    }
    jobs = {
        "prep": ("prep.sbatch", {**cpu_only, "job_name": "vla-dipole-prep", "prep_args": prep_args}, []),
        "prep_merge": (
            "prep_merge.sbatch",
            {**cpu_only, "job_name": "vla-dipole-prep-merge", "prep_args": prep_args},
            ["prep"],
        ),
        "train": ("train.sbatch", train, ["prep_merge"]),
        "eval": (
            "eval.sbatch",
            {
                **cpu_only,
                **{"sbatch_extra": _sbatch_extra(a, min(a.gpus_per_node, 1))},
                "job_name": "vla-dipole-eval",
                "eval_args": eval_args,
            },
            ["train"],
        ),
        "eval_merge": ("eval_merge.sbatch", {**cpu_only, "job_name": "vla-dipole-eval-merge"}, ["eval"]),
    }
    order = {
        "prep": ["prep", "prep_merge"],
        "train": ["train"],
        "eval": ["eval", "eval_merge"],
        "pipeline": ["prep", "prep_merge", "train", "eval", "eval_merge"],
    }[a.stage]
    out = []
    for name in order:
        tpl, values, deps = jobs[name]
        out.append((name, render(tpl, values), [d for d in deps if d in order]))
    return out


def submit(argv: list[str] | None = None) -> dict[str, str]:
    a = parse_args(argv)
    run_dir = (a.run_dir or REPO_DIR / "runs" / f"{a.stage}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    rendered = render_jobs(a, run_dir)
    if a.dry_run:
        for name, text, deps in rendered:
            dep = f" (after {', '.join(deps)})" if deps else ""
            print(f"# ===== {name}.sbatch{dep} =====\n{text}")
        return {}
    (run_dir / "slurm").mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    for name, text, deps in rendered:
        script = run_dir / "slurm" / f"{name}.sbatch"
        script.write_text(text)
        cmd = ["sbatch", "--parsable"]
        if deps:
            cmd.append("--dependency=afterok:" + ":".join(ids[d] for d in deps))
        cmd.append(str(script))
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=run_dir)
        if res.returncode != 0:
            raise SystemExit(f"sbatch failed for {script}: {res.stderr.strip()}")
        ids[name] = res.stdout.strip().split(";")[0]
        print(f"submitted {name}: job {ids[name]}")
    record = {
        "command": [sys.executable, "-m", "slurm.submit", *(argv if argv is not None else sys.argv[1:])],
        "run_dir": str(run_dir),
        "jobs": ids,
    }
    (run_dir / "slurm" / "submitted.json").write_text(json.dumps(record, indent=2))
    return ids


def main(argv: list[str] | None = None) -> None:
    submit(argv)


if __name__ == "__main__":
    main()
