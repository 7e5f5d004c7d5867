"""Online rounds: sample K candidates per training scene from the current policy, score, retrain.

Round r (1..dipole.rounds) exports the current policy, asks data_prep.build_shards' `policy` source
for `dipole.samples_per_scene` trajectories per scene at guidance `dipole.omega` (scored by the PDM
engine inside the builder), writes them to `<output_dir>/round-<r>/shards`, and then training
continues on the replay of every round's shards so far (all with the same K, so scene groups and
advantages are comparable; the offline shards trained round 0). The reference policy
mu of round r is thus the policy of round r-1: its samples are the candidates, its weights the start.
Only rank 0 builds; the builder resumes a killed build, so a preempted round restarts cheaply.
On real logs the offline build's `--metric-cache` (from its manifest) scores the round's candidates too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate import Accelerator
from omegaconf import DictConfig

from vla_dipole.data import shard_io
from vla_dipole.training.indexed_data import shard_dirs


def round_dir(cfg: DictConfig, round_: int) -> Path:
    return Path(cfg.output_dir) / f"round-{round_:02d}"


def round_data_dirs(cfg: DictConfig, round_: int) -> list[Path]:
    """Shard directories trained on in `round_`: the offline data in round 0, the replay of rounds 1..round_ after."""
    if round_ == 0:
        return shard_dirs(cfg.data.shards)
    return shard_dirs([round_dir(cfg, r) / "shards" for r in range(1, round_ + 1)])


def _build_args(manifest: dict[str, Any], source: Path) -> dict[str, Any]:
    """Observation and scoring options of the offline build, so the new shards match the old ones
    (real logs are scored from the same NAVSIM metric cache, with the same rule for scenes it lacks)."""
    config = manifest.get("config", {})
    missing = [k for k in ("cameras", "image_size", "history_frames") if k not in config]
    if missing or "data_root" not in manifest:
        raise ValueError(
            f"{source}/manifest.json: online rounds need fields data_root and config.{{cameras, image_size, "
            f"history_frames}} to re-render the scenes; missing {missing or ['data_root']}"
        )
    return {
        "data_root": manifest["data_root"],
        "split": manifest["split"],
        "cameras": config["cameras"],
        "image_size": config["image_size"],
        "history_frames": config["history_frames"],
        "shard_size": config.get("shard_size", 256),
        "limit": config.get("limit"),
        "frame_interval": config.get("frame_interval", 1),
        "metric_cache": config.get("metric_cache"),
        "missing_cache": config.get("missing_cache", "error"),
    }


def run_online_round(accelerator: Accelerator, cfg: DictConfig, policy: Any, ema: Any, round_: int) -> Path:
    """Export the current policy, build this round's policy-candidate shards (rank 0), sync all ranks."""
    from data_prep.build_shards import build_shards
    from vla_dipole.training import policy_io

    rdir = round_dir(cfg, round_)
    policy_dir = rdir / "policy"
    policy_io.export(accelerator, policy, ema, policy_dir, cfg.stage)
    out = rdir / "shards"
    if accelerator.is_main_process:
        source = shard_dirs(cfg.data.shards)[0]
        args = _build_args(shard_io.read_manifest(source), source)
        print(
            f"[train] online round {round_}: sampling {cfg.dipole.samples_per_scene} candidates/scene "
            f"at omega={cfg.dipole.omega} from {policy_dir}",
            flush=True,
        )
        build_shards(
            out=out,
            sources={"policy": int(cfg.dipole.samples_per_scene)},
            num_candidates=int(cfg.dipole.samples_per_scene),
            workers=1,
            seed=int(cfg.seed) + round_,
            policy=policy_dir,
            omega=float(cfg.dipole.omega),
            policy_steps=int(cfg.dipole.num_steps),
            **args,
        )
    accelerator.wait_for_everyone()
    return out
