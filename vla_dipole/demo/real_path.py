"""`make check-real-path`: the README's "Each stage on real NAVSIM data" commands, run on synthetic data.

    python -m vla_dipole.demo.real_path --out real_path_out [--plan]

The commands are read from README.md, not copied: each one runs as the README writes it, after a fixed
list of rewrites that only swap what a CPU box cannot have (every rewrite must apply, so a README edit
that removes what a rewrite expects fails here, and any other edit runs as written):

- the real OpenScene data -> a synthetic split in the same layout (`trainval`, `test`);
- navsim's `run_metric_caching.py` (needs the nuPlan maps) -> the same cache written from the synthetic
  scenes with navsim's own classes (`write_split_cache`), for the training and the evaluation split;
- `model=openvla-7b` -> that preset shrunk to tiny widths (tiny backbone sizes, a 64-wide head), every
  other setting kept: cameras, history, prompt, branch LoRA, solver, steps;
- 8 GPUs -> 2 CPU processes with the same accelerate file's DeepSpeed config (gloo backend);
- sizes: vocabulary 16, 2 workers, a few hundred samples, one online round.

Then `DipoleAgent` (from its hydra YAML) plans on AgentInputs built by navsim's own SceneLoader.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Each stage on real NAVSIM data"
ENV_VARS = ("OPENSCENE_DATA_ROOT", "NUPLAN_MAPS_ROOT", "NUPLAN_MAP_VERSION", "NAVSIM_EXP_ROOT")
# what every README command must be, in order (a command added or dropped there fails the plan)
STAGES = (
    "pip install",
    "run_metric_caching.py",
    "data_prep.vocabulary",
    "data_prep.build_shards",
    "data_prep.validate",
    "train.py stage=bc",
    "train.py stage=dipole",
    "navsim_adapter.evaluation.evaluate",
    "navsim_adapter.evaluation.submission",
)
TRAIN_LENGTH = (
    "schedule.total_samples=96 schedule.global_batch=8 schedule.micro_batch=2 schedule.warmup_samples=8 "
    "checkpoint.every_samples=96 dipole.samples_per_scene=4 dipole.round_samples=48 "
    "logging.progress=false logging.tensorboard=false"
)
TINY_WIDTH = {"backbone": {"preset": "tiny"}, "head": {"width": 64, "depth": 2, "num_heads": 4}}


@dataclass(frozen=True)
class Rewrite:
    """A regex substitution on the README commands; it must match at least once."""

    why: str
    pattern: str
    repl: str | Callable[[re.Match], str]


def readme_commands(readme: Path) -> tuple[dict[str, str], list[str]]:
    """(exported variables, commands) of the README's real-data section (its bash blocks, continuations joined)."""
    text = readme.read_text()
    if SECTION not in text:
        raise ValueError(f"{readme}: section {SECTION!r} not found")
    body = text.split(SECTION, 1)[1]
    body = re.split(r"\n##+ ", body, maxsplit=1)[0]
    exports: dict[str, str] = {}
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip() if not line.lstrip().startswith("#") else ""
            if not line:
                continue
            m = re.fullmatch(r"export (\w+)=(\S+)", line)
            if m:
                exports[m.group(1)] = m.group(2)
            else:
                commands.append(re.sub(r"\s+", " ", line))
    return exports, commands


def rewrites(out: Path) -> list[Rewrite]:
    py = "python -c"
    cache = "from navsim_adapter.pdm.metric_cache import write_split_cache as w; "

    def metric_cache(m: re.Match) -> str:
        return f"{py} \"{cache}w('$OPENSCENE_DATA_ROOT', 'trainval', '{m.group(1)}')\""

    return [
        Rewrite("installed already", r"^pip install -e '\.\[navsim\]'$", ":"),
        Rewrite(
            "navsim's metric caching needs the nuPlan maps: the same cache from the synthetic scenes",
            r"^python \$NAVSIM_DEVKIT_ROOT/navsim/planning/script/run_metric_caching\.py "
            r"train_test_split=navtrain metric_cache_path=(\S+)$",
            metric_cache,
        ),
        Rewrite(
            "the evaluation split's cache, written the same way before evaluating",
            r"^(python -m navsim_adapter\.evaluation\.evaluate .*--split (\S+) .*--metric-cache (\S+) .*)$",
            lambda m: (
                f"{py} \"{cache}w('$OPENSCENE_DATA_ROOT', '{m.group(2)}', '{m.group(3)}')\" && {m.group(1)}"
            ),
        ),
        Rewrite("a vocabulary the size of a few scenes", r"--size 1024\b", "--size 16"),
        Rewrite("2 CPU cores", r"--workers 16\b", "--workers 2"),
        Rewrite(
            "8 GPUs -> 2 CPU processes, the same DeepSpeed config",
            r"^accelerate launch --config_file configs/accelerate/gpu_multi\.yaml ",
            f"accelerate launch --config_file {out / 'cpu_2proc.yaml'} --num_cpu_threads_per_process 1 ",
        ),
        Rewrite(
            "openvla-7b at tiny widths", r"(model[= ])openvla-7b\b", rf"\g<1>{out / 'openvla-7b-tiny.yaml'}"
        ),
        Rewrite("a short training run", r"( vla_dipole/train\.py stage=\w+ .*)$", rf"\1 {TRAIN_LENGTH}"),
        Rewrite("one online round", r"dipole\.rounds=\d+", "dipole.rounds=1"),
    ]


def plan(readme: Path, out: Path) -> list[str]:
    """The commands to run: the README's, rewritten (every rewrite must apply; stages in README order)."""
    exports, commands = readme_commands(readme)
    if set(exports) != set(ENV_VARS):
        raise ValueError(f"{readme}: {SECTION} exports {sorted(exports)}, expected {sorted(ENV_VARS)}")
    found = [next((s for s in STAGES if s in c), c) for c in commands]
    if found != list(STAGES):
        raise ValueError(f"{readme}: {SECTION} has commands {found}, expected {list(STAGES)}")
    for rw in rewrites(out):
        hits = 0
        new = []
        for c in commands:
            c, n = re.subn(rw.pattern, rw.repl, c)
            hits += n
            new.append(c)
        if not hits:
            raise ValueError(f"{readme}: the rewrite '{rw.why}' ({rw.pattern}) matches no command any more")
        commands = new
    return commands


def write_configs(out: Path) -> None:
    """openvla-7b at tiny widths, and gpu_multi.yaml on 2 CPU processes (its DeepSpeed file kept)."""
    from omegaconf import OmegaConf

    from vla_dipole.model.config import PolicyConfig

    preset = OmegaConf.load(REPO / "configs" / "model" / "openvla-7b.yaml")
    preset.name, preset.tokenizer, preset.pretrained_backbone = "openvla-7b-tiny", "tiny", None
    tiny = OmegaConf.merge(preset, TINY_WIDTH)
    OmegaConf.save(tiny, out / "openvla-7b-tiny.yaml")
    PolicyConfig.from_yaml(out / "openvla-7b-tiny.yaml")  # valid
    acc = OmegaConf.load(REPO / "configs" / "accelerate" / "gpu_multi.yaml")
    acc.num_processes, acc.use_cpu = 2, False
    acc.pop("gpu_ids", None)
    acc.deepspeed_config.deepspeed_config_file = str(REPO / acc.deepspeed_config.deepspeed_config_file)
    OmegaConf.save(acc, out / "cpu_2proc.yaml")


def synthesize(data: Path) -> None:
    for split, logs, seed in (("trainval", 3, 0), ("test", 1, 1000)):
        if not list((data / "navsim_logs" / split).glob("*.pkl")):
            argv = ["--out", str(data), "--split", split, "--logs", str(logs), "--seed", str(seed)]
            argv += ["--frames", "20", "--image-size", "96x54", "--cameras", "all", "--workers", "1"]
            subprocess.run([sys.executable, "-m", "data_prep.synthesize", *argv], check=True, env=_env())


def _env(out: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # `python` / `accelerate` in the README are this environment's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DS_ACCELERATOR="cpu", DS_BUILD_OPS="0", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if out is not None:
        env.update(
            OPENSCENE_DATA_ROOT=str(out / "data"),
            NUPLAN_MAPS_ROOT=str(out / "maps"),
            NUPLAN_MAP_VERSION="nuplan-maps-v1.0",
            NAVSIM_EXP_ROOT=str(out / "exp"),
        )
    return env


def run_agent(out: Path, split: str = "test", omega: float = 1.0, scenes: int = 3) -> list:
    """DipoleAgent from its hydra YAML on AgentInputs that navsim's own SceneLoader builds."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from navsim.common.dataclasses import SceneFilter
    from navsim.common.dataloader import SceneLoader

    checkpoint = out / "runs" / "dipole" / "policy"
    with initialize_config_module(config_module="navsim_adapter.evaluation.config", version_base=None):
        cfg = compose(
            overrides=["+agent=dipole_agent", f"agent.checkpoint_path={checkpoint}", f"agent.omega={omega}"]
        )
    agent = instantiate(cfg.agent)
    agent.initialize()
    data = out / "data"
    loader = SceneLoader(
        data_path=data / "navsim_logs" / split,
        original_sensor_path=data / "sensor_blobs" / split,
        scene_filter=SceneFilter(num_history_frames=4, num_future_frames=10, frame_interval=1),
        sensor_config=agent.get_sensor_config(),
    )
    plans = [agent.compute_trajectory(loader.get_agent_input_from_token(t)) for t in loader.tokens[:scenes]]
    for p in plans:
        if p.poses.shape != (8, 3) or not bool((abs(p.poses) < 1e3).all()):
            raise RuntimeError(f"DipoleAgent: bad plan {p.poses}")
    return plans


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(
        prog="python -m vla_dipole.demo.real_path",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("real_path_out"))
    p.add_argument("--readme", type=Path, default=REPO / "README.md")
    p.add_argument("--plan", action="store_true", help="print the rewritten commands and stop")
    a = p.parse_args(argv)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    commands = plan(a.readme, out)
    if a.plan:
        print("\n".join(commands))
        return out
    write_configs(out)
    for link in ("vla_dipole", "configs"):  # the README's repo-relative paths, run from OUT
        if not (out / link).exists():
            (out / link).symlink_to(REPO / link)
    t_all = time.time()
    synthesize(out / "data")
    for cmd in commands:
        t0 = time.time()
        print(f"\n$ {cmd}", flush=True)
        res = subprocess.run(["bash", "-ec", cmd], cwd=out, env=_env(out))
        if res.returncode != 0:
            raise SystemExit(f"check-real-path: README command failed (exit {res.returncode}): {cmd}")
        print(f"  done in {time.time() - t0:.0f}s", flush=True)
    plans = run_agent(out)
    print(
        f"\nDipoleAgent: {len(plans)} plans on navsim AgentInputs; all stages done in {time.time() - t_all:.0f}s"
    )
    return out


if __name__ == "__main__":
    main()
