"""Distributed setup: accelerate + DeepSpeed that really runs on CPU processes (gloo) and on GPUs (nccl).

The trap: on a GPU-less host accelerate's process-group backend
stays None under `accelerate launch` with DeepSpeed, so it reports world size 1 while DeepSpeed's own
group has 2 ranks (batch-size assertion, or a silently unsharded run). Passing the backend explicitly
fixes it. Never use `cpu=True` / ACCELERATE_USE_CPU: it drops the DeepSpeed plugin for plain DDP.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs

from vla_dipole.training.schedule import BatchPlan


def make_accelerator(timeout_s: int = 1800) -> Accelerator:
    """An Accelerator whose world size is right on CPU (gloo) and on GPU (nccl)."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") and os.environ.get(
        "ACCELERATE_USE_DEEPSPEED", ""
    ).lower() in ("1", "true", "yes"):
        raise RuntimeError(
            "ACCELERATE_USE_CPU is set together with DeepSpeed: accelerate would drop DeepSpeed and run plain "
            "DDP. Unset ACCELERATE_USE_CPU (and do not pass --cpu); CPU DeepSpeed runs use the gloo backend."
        )
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:  # one process: no process group to configure
        return Accelerator()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    handler = InitProcessGroupKwargs(backend=backend, timeout=timedelta(seconds=timeout_s))
    return Accelerator(kwargs_handlers=[handler])


def is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def configure_batches(accelerator: Accelerator, plan: BatchPlan, grad_clip: float) -> None:
    """Tell accelerate and DeepSpeed the derived micro batch / accumulation / clipping before `prepare`."""
    if plan.world_size != accelerator.num_processes:
        raise RuntimeError(
            f"batch plan for world size {plan.world_size}, accelerator has {accelerator.num_processes}"
        )
    accelerator.gradient_accumulation_steps = plan.grad_accum
    if is_deepspeed(accelerator):
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = plan.micro_batch
        ds["gradient_accumulation_steps"] = plan.grad_accum
        ds["train_batch_size"] = plan.global_batch
        ds["gradient_clipping"] = float(grad_clip)
        ds.pop("scheduler", None)  # the learning rate is a function of samples seen, set by the loop
        ds.pop("optimizer", None)  # the loop's torch AdamW is used (no DeepSpeedCPUAdam build needed)


def zero_stage(accelerator: Accelerator) -> int:
    if not is_deepspeed(accelerator):
        return 0
    return int(
        accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0)
    )


def describe(accelerator: Accelerator, model: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
    """What actually runs, as seen from inside this rank (the launch tests assert on it)."""
    import torch.distributed as dist

    info: dict[str, Any] = {
        "rank": accelerator.process_index,
        "distributed_type": str(accelerator.distributed_type),
        "num_processes": accelerator.num_processes,
        "torch_world_size": dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1,
        "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None,
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
        "optimizer_class": type(getattr(optimizer, "optimizer", optimizer)).__name__,
        "zero_stage": zero_stage(accelerator),
    }
    if hasattr(model, "zero_optimization_stage"):
        info["engine_zero_stage"] = int(model.zero_optimization_stage())
    params = [p for p in model.parameters() if p.requires_grad]
    partitioned = [p for p in params if hasattr(p, "ds_numel")]
    info["trainable_params"] = len(params)
    info["partitioned_params"] = len(partitioned)
    info["full_numel"] = int(sum(getattr(p, "ds_numel", p.numel()) for p in params))
    info["local_numel"] = int(
        sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
    )
    return info


def write_describe(info: dict[str, Any], output_dir: Path) -> None:
    path = Path(output_dir) / f"dist_info_rank{info['rank']}.json"
    path.write_text(json.dumps(info, indent=2, sort_keys=True))


def gathered_params(accelerator: Accelerator, params: list[torch.nn.Parameter]):
    """Context manager giving the full values of ZeRO-3 partitioned params (no-op otherwise)."""
    import contextlib

    if zero_stage(accelerator) == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()
