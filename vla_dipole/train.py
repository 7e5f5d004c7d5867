"""Train a DIPOLE driving policy: stages bc | dipole | awr, online rounds, DeepSpeed ZeRO-2/3, exact resume.

    python vla_dipole/train.py stage=bc data.shards=shards/ output_dir=runs/bc           # one process
    DS_ACCELERATOR=cpu accelerate launch --config_file configs/accelerate/cpu_2proc_zero3.yaml \\
        --num_cpu_threads_per_process 1 vla_dipole/train.py stage=dipole init_from=runs/bc/policy ...

Overrides are `key=value` against configs/train/base.yaml (`config=<preset>`, `model=<preset>`).
Everything is measured in samples: a run on 1, 2 or 64 devices sees the same samples, in the same
optimizer-step groups, with the same noise and learning rate. Re-running the same command resumes
from the newest checkpoint in `output_dir` (model, optimizer, RNG, data position, online round).
SIGUSR1 / SIGTERM: checkpoint at the next step boundary, write `preempted.json`, exit 0.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python vla_dipole/train.py` / `accelerate launch vla_dipole/train.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from accelerate.utils import set_seed
from tqdm import tqdm

from vla_dipole.data.collate import collate
from vla_dipole.data.shard_format import SampleFormatError
from vla_dipole.data.shard_io import read_manifest
from vla_dipole.model.observation_spec import ObservationMismatch, bind_to_shards
from vla_dipole.training import policy_io
from vla_dipole.training.checkpoint import (
    STATE_FILE,
    DamagedCheckpointError,
    TrainerState,
    clean_stale_tmp,
    resume_checkpoint,
    save_checkpoint,
)
from vla_dipole.training.config import ConfigError, config_root, load_config, save_config
from vla_dipole.training.distributed import (
    configure_batches,
    describe,
    is_deepspeed,
    make_accelerator,
    write_describe,
    zero_stage,
)
from vla_dipole.training.ema import HeadEMA
from vla_dipole.training.feature_cache import FeatureCache
from vla_dipole.training.indexed_data import DamagedShardError, IndexedShards, record_integrity, shard_dirs
from vla_dipole.training.objective import sample_noise, step_seed
from vla_dipole.training.online import round_data_dirs, run_online_round
from vla_dipole.training.preemption import PreemptionFlag, clear_preempted, write_preempted
from vla_dipole.training.schedule import SampleOrder, StepBatches, lr_at, plan_batches
from vla_dipole.training.stages import STAGES, get_stage, stage_loss
from vla_dipole.training.tracking import MetricsLogger, truncate_metrics


def usage() -> str:
    """``--help``: this module's docstring, the stages and where the configuration schema lives."""
    root = config_root()
    presets = lambda sub: ", ".join(sorted(p.stem for p in (root / sub).glob("*.yaml")))  # noqa: E731
    stages = "\n".join(f"  {name:<7} {stage.help}" for name, stage in STAGES.items())
    return (
        f"usage: python vla_dipole/train.py [key=value ...]\n\n{__doc__.strip()}\n\nStages (stage=...):\n{stages}\n\n"
        f"Config schema: {root / 'train' / 'base.yaml'} (every key commented; unknown keys are errors)\n"
        f"Training presets (config=...): {presets('train')}\nModel presets (model=...): {presets('model')}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help", "help"} & set(argv):
        print(usage())
        raise SystemExit(0)
    cfg = load_config(argv)
    accelerator = make_accelerator()
    rank, world, is_main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    out = Path(cfg.output_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(out)
        save_config(cfg, out / "config.yaml")
    accelerator.wait_for_everyone()

    # -------------------------------------------------------------- where do we start?
    ckpt = resume_checkpoint(out, log=print if is_main else None) if cfg.checkpoint.resume else None
    state = TrainerState.from_file(ckpt / STATE_FILE) if ckpt else TrainerState(extra={"stage": cfg.stage})
    if state.extra.get("stage", cfg.stage) != cfg.stage:
        raise ConfigError(
            f"{ckpt}: output_dir holds a stage={state.extra['stage']} run, this config has stage={cfg.stage}; "
            "use another output_dir (or checkpoint.resume=false to start over)"
        )
    if is_main:
        clear_preempted(out)
        truncate_metrics(out, state.round, state.step)

    # -------------------------------------------------------------- model (identical init on every rank)
    set_seed(cfg.seed)
    policy = policy_io.build_policy(cfg)
    manifests = {str(d): read_manifest(d) for d in shard_dirs(cfg.data.shards)}
    try:  # the shards hold what the model reads; the saved policy records their image size
        for shards, manifest in manifests.items():
            bind_to_shards(policy.config, manifest, shards)
    except ObservationMismatch as err:
        raise ConfigError(f"config field 'data.shards': {err}") from None
    if not cfg.init_from:  # a fresh policy normalises trajectories with the training data's statistics
        policy_io.set_trajectory_stats(policy, shard_dirs(cfg.data.shards))
    module = policy_io.TrainModule(
        policy, cfg.stage, zero3=zero_stage(accelerator) == 3, aux_probe=cfg.bc.aux_weight > 0
    )
    params = [p for p in module.parameters() if p.requires_grad]
    num_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )
    # one plan per run: global batch / micro batch / world size fix the accumulation for every round
    plan = plan_batches(
        cfg.schedule.global_batch, cfg.schedule.micro_batch, world, cfg.schedule.total_samples
    )
    configure_batches(accelerator, plan, cfg.optim.grad_clip)
    model, optimizer = accelerator.prepare(module, optimizer)
    if is_main:
        print(
            f"[train] stage={cfg.stage} world={world} deepspeed={is_deepspeed(accelerator)} "
            f"global_batch={plan.global_batch} micro_batch={plan.micro_batch} accum={plan.grad_accum} "
            f"trainable={num_trainable:,}",
            flush=True,
        )
    write_describe(describe(accelerator, model, optimizer), out)
    ema = (
        HeadEMA(accelerator, [p for p in policy.parameters() if p.requires_grad], cfg.ema.decay)
        if cfg.ema.enabled
        else None
    )
    if ckpt is not None:
        try:
            accelerator.load_state(str(ckpt))  # model, optimizer, every rank's RNG states
        except Exception as exc:  # a checkpoint without checksums.json (older runs) that fails to load
            raise DamagedCheckpointError(f"{ckpt}: cannot load it: {type(exc).__name__}: {exc}") from exc
        if ema is not None:
            ema.load(ckpt)
        if is_main:
            print(
                f"[train] resumed from {ckpt} (round {state.round}, step {state.step}, {state.samples_seen} samples)"
            )

    logger = MetricsLogger(out, enabled=is_main, tensorboard=cfg.logging.tensorboard)
    preempt = PreemptionFlag()
    policy = accelerator.unwrap_model(model).policy
    summary: dict[str, Any] = {}

    # -------------------------------------------------------------- offline phase (round 0), then online rounds
    for round_ in range(state.round, int(cfg.dipole.rounds) + 1):
        if round_ != state.round:  # entering a new online round: sample, score, write shards (rank 0)
            run_online_round(accelerator, cfg, policy, ema, round_)
            state = TrainerState(round=round_, extra={"stage": cfg.stage})
        phase_samples = policy_io.phase_samples(cfg, round_)
        plan = plan_batches(cfg.schedule.global_batch, cfg.schedule.micro_batch, world, phase_samples)
        state.phase_total_samples = phase_samples
        dataset = IndexedShards(
            round_data_dirs(cfg, round_),
            verify=cfg.data.verify,
            on_damaged=cfg.data.on_damaged,
            image_frames=policy.config.observation.history_frames,
        )
        if is_main:
            record_integrity(out, round_, dataset)
        cache = FeatureCache.maybe_build(accelerator, cfg, policy, dataset, round_)
        order = SampleOrder(len(dataset), seed=cfg.seed + 7919 * round_)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=StepBatches(plan, order, rank, start_step=state.step),
            collate_fn=collate,
            num_workers=cfg.data.num_workers,
        )
        batches = iter(loader)
        every_ckpt = max(1, cfg.checkpoint.every_samples // plan.global_batch)
        bar = tqdm(
            total=plan.total_steps,
            initial=state.step,
            desc=f"{cfg.stage} r{round_}",
            disable=not (is_main and cfg.logging.progress),
            dynamic_ncols=True,
        )
        model.train()
        t_start, samples_start = time.perf_counter(), state.samples_seen

        while state.step < plan.total_steps:
            t0 = time.perf_counter()
            torch.manual_seed(step_seed(cfg.seed, rank, round_, state.step))  # dropout etc.: resume-exact
            lr = lr_at(
                state.samples_seen + plan.global_batch,
                cfg.optim.lr,
                cfg.schedule.warmup_samples,
                phase_samples,
                cfg.optim.min_lr_ratio,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            sums: dict[str, float] = {}
            hists: dict[str, list[torch.Tensor]] = {}
            for micro in range(plan.grad_accum):
                batch = next(batches)
                positions = plan.positions(state.step, micro, rank)
                noise = sample_noise(
                    positions,
                    policy_io.action_shape(policy),
                    batch["candidates"].shape[1] if get_stage(cfg.stage).candidates else 0,
                    policy_io.num_train_timesteps(policy),
                    cfg.seed,
                    round_,
                )
                features = cache.lookup(order.indices(positions)) if cache is not None else None
                with accelerator.accumulate(model):
                    errors = model(**policy_io.forward_inputs(policy, batch, noise, features, cfg.stage))
                    loss, stats, hist = stage_loss(cfg.stage, cfg, errors, batch)
                    policy_io.check_finite_loss(
                        accelerator, loss, batch, f"round {round_} step {state.step + 1}"
                    )
                    accelerator.backward(loss)
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + float(value) / plan.grad_accum
                for key, value in hist.items():
                    hists.setdefault(key, []).append(value)
            grad_norm = policy_io.finish_step(accelerator, model, optimizer, cfg.optim.grad_clip)
            if ema is not None:
                ema.update()
            state.step += 1
            state.samples_seen += plan.global_batch

            # ---- logging: losses averaged over ranks, so every rank reports the same numbers
            reduced = accelerator.reduce(torch.tensor(list(sums.values()), dtype=torch.float64), "mean")
            record = {
                "round": round_,
                "step": state.step,
                "samples": state.samples_seen,
                "lr": lr,
                **{k: float(v) for k, v in zip(sums, reduced.tolist(), strict=True)},
            }
            record["grad_norm"] = grad_norm
            record["samples_per_s"] = plan.global_batch / max(time.perf_counter() - t0, 1e-9)
            summary = {**record, "loss_local": sums["loss"]}  # this rank's own micro-batches
            if state.step % cfg.logging.every_steps == 0 or state.step == plan.total_steps:
                logger.log(
                    record,
                    global_step=state.step + round_ * 10**6,
                    histograms={k: torch.cat([v.reshape(-1) for v in vs]) for k, vs in hists.items()},
                )
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")

            # ---- checkpoint / preemption at the step boundary
            stop = preempt.agreed(accelerator)
            if stop or state.step % every_ckpt == 0 or state.step == plan.total_steps:
                path = _checkpoint(accelerator, cfg, out, state, ema)
            if stop:
                if is_main:
                    write_preempted(
                        out,
                        step=state.step,
                        samples_seen=state.samples_seen,
                        round=state.round,
                        checkpoint=str(path),
                        signal=preempt.signum,
                    )
                    print(f"[train] preempted: checkpoint {path} written, exiting", flush=True)
                bar.close()
                logger.close()
                preempt.restore()
                accelerator.wait_for_everyone()
                accelerator.end_training()
                return {"preempted": True, **summary}
        bar.close()
        elapsed = time.perf_counter() - t_start
        summary["phase_samples_per_s"] = (state.samples_seen - samples_start) / max(elapsed, 1e-9)

    # -------------------------------------------------------------- export the trained policy
    policy_dir = out / "policy"
    policy_io.export(accelerator, policy, ema, policy_dir, cfg.stage)
    if is_main:
        print(
            f"[train] done: stage={cfg.stage} rounds={cfg.dipole.rounds} steps={state.step} "
            f"samples={state.samples_seen} loss={summary.get('loss', float('nan')):.4f} "
            f"samples/s={summary.get('phase_samples_per_s', 0.0):.1f} policy={policy_dir}",
            flush=True,
        )
    (out / f"final_rank{rank}.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    logger.close()
    preempt.restore()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _checkpoint(accelerator, cfg, out: Path, state: TrainerState, ema: HeadEMA | None) -> Path:
    index = state.round * 10**6 + state.step  # sortable across online rounds
    extras = {"ema": ema.save} if ema is not None else None
    return save_checkpoint(
        out,
        index,
        state,
        save_state=lambda d: accelerator.save_state(str(d)),
        is_main=accelerator.is_main_process,
        barrier=accelerator.wait_for_everyone,
        keep_last=cfg.checkpoint.keep_last,
        extras=extras,
    )


def cli() -> None:
    """`python vla_dipole/train.py ...`: a config mistake is one line and exit code 2; damaged data,
    a damaged checkpoint or a non-finite loss one line and exit code 1 (no traceback for either)."""
    try:
        main()
    except ConfigError as exc:
        print(f"train.py: config error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except (DamagedShardError, SampleFormatError, policy_io.NonFiniteError, DamagedCheckpointError) as exc:
        print(f"train.py: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    cli()
