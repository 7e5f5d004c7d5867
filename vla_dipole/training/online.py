"""Online rounds: sample K candidates per training scene from the current policy, score, retrain.

Round r (1..dipole.rounds) hands the current policy, in memory (EMA weights when enabled, gathered
under ZeRO-3), to data_prep's shard builder as its `policy` candidate source: `dipole.samples_per_scene`
trajectories per scene at guidance `dipole.omega`, scored by the PDM engine inside the builder, written
to `<output_dir>/round-<r>/shards`. Training then continues on the replay of every round's shards so far
(all with the same K, so scene groups and advantages are comparable; the offline shards trained round 0).
The reference policy mu of round r is thus the policy of round r-1: its samples are the candidates, its
weights the start. `dipole.round_frame_interval` N samples only every N-th of the offline build's scenes
(sampling and scoring K candidates per scene is a round's cost; training on them is cheap). The round's
scenes, observation and scoring source are the offline build's own settings (its manifest's `config`: on
real logs, the same NAVSIM metric cache and rule for scenes it lacks); scenes scored from their logs
reuse the offline build's PDM reference plans. Only rank 0 builds; the builder resumes a killed build,
so a preempted round restarts cheaply.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from omegaconf import DictConfig

from data_prep.build_shards import BuildSettings, build
from data_prep.reference_plans import load_plans
from vla_dipole.data.shard_io import read_manifest
from vla_dipole.inference import PolicyRunner
from vla_dipole.training import policy_io
from vla_dipole.training.indexed_data import shard_dirs


def round_dir(cfg: DictConfig, round_: int) -> Path:
    return Path(cfg.output_dir) / f"round-{round_:02d}"


def round_data_dirs(cfg: DictConfig, round_: int) -> list[Path]:
    """Shard directories trained on in `round_`: the offline data in round 0, the replay of rounds 1..round_ after."""
    if round_ == 0:
        return shard_dirs(cfg.data.shards)
    return shard_dirs([round_dir(cfg, r) / "shards" for r in range(1, round_ + 1)])


def round_settings(
    manifest: dict[str, Any], source: Path, cfg: DictConfig, round_: int, label: str
) -> BuildSettings:
    """The offline build's settings (scenes, observation, scoring source) with this round's policy source."""
    offline = BuildSettings.from_json(manifest.get("config", {}), f"{source}/manifest.json (online rounds)")
    return dataclasses.replace(
        offline,
        sources=(("policy", int(cfg.dipole.samples_per_scene)),),
        seed=int(cfg.seed) + round_,
        frame_interval=offline.frame_interval * int(cfg.dipole.get("round_frame_interval", 1)),
        vocabulary_sha256=None,
        policy={
            "checkpoint": label,
            "omega": float(cfg.dipole.omega),
            "num_steps": int(cfg.dipole.num_steps),
        },
    )


def run_online_round(accelerator: Accelerator, cfg: DictConfig, policy: Any, ema: Any, round_: int) -> Path:
    """Build this round's policy-candidate shards from the in-memory policy (rank 0); sync all ranks."""
    out = round_dir(cfg, round_) / "shards"
    label = f"in-memory policy of online round {round_}"
    copy = policy_io.inference_copy(accelerator, policy, ema, f"{label} ({cfg.output_dir})")
    if accelerator.is_main_process:
        source = shard_dirs(cfg.data.shards)[0]
        settings = round_settings(read_manifest(source), source, cfg, round_, label)
        plans = load_plans(source)
        print(
            f"[train] online round {round_}: sampling {cfg.dipole.samples_per_scene} candidates/scene "
            f"at omega={cfg.dipole.omega} from the current policy",
            flush=True,
        )
        runner = PolicyRunner(copy, num_steps=int(cfg.dipole.num_steps), source=label)
        build(settings, out, runner=runner, workers=1, reference_plans=plans)
    accelerator.wait_for_everyone()
    return out
