"""What training a model preset needs per GPU, computed from the config (no GPU, no weights).

    python -m vla_dipole.training.hardware [--model openvla-7b] [--micro-batch 1 4] [--gpus 8 16] [--candidates 24]

For each shipped DeepSpeed config (configs/deepspeed/zero{2,3}[_offload].json), LoRA off / on (the preset's
``branch_lora``: separate pi+ / pi- LLM adapters), micro-batch and GPU count it prints the per-GPU memory of
parameters, gradients, optimizer states and activations, what is offloaded to CPU, and the training FLOPs
per sample (one scene: its K candidates and the logged trajectory, DIPOLE stage).

How each number is obtained:
- parameter counts: the full-size policy built on the meta device (the real parameter names and shapes);
  trainable = both heads (+ the LoRA adapters), frozen = the rest of the backbone;
- model states of the trainable parameters: DeepSpeed's own estimators
  (``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_model_states_mem_needs``, mixed precision:
  16-bit params and grads, fp32 master, Adam m and v), split into their parameter / gradient / optimizer
  terms with the same multipliers; for the configs that train in fp32 (bf16 disabled: the CPU-tested
  zero2.json / zero3.json) the same accounting with 4-byte params and grads and no separate master copy;
- frozen weights: 2 or 4 bytes each, replicated under ZeRO-2, partitioned under ZeRO-3, on CPU with
  ``offload_param``;
- activations: the heads' tensors saved for backward, measured on the meta device with
  ``torch.autograd.graph.saved_tensors_hooks`` (plus, once per micro-batch, the stacked copies of both
  heads' weights that ``stack_heads`` makes for each of the two ``branch_errors`` calls); with LoRA, the LLM's under gradient checkpointing (one
  [tokens, hidden] input per layer kept, plus one layer's recompute, 34 s h + 5 a s^2 bytes in 16 bit,
  Korthikanti et al. 2022), once per adapter; the backbone's output tokens;
- FLOPs: vision and heads counted by torch's FlopCounterMode on the meta device (heads forward and
  backward), the LLM as 2 N T + 4 L T^2 h per forward; frozen parts run forward only, the LLM with LoRA
  forward + input-gradient backward + a checkpoint recompute (3 forwards), per adapter.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.flops import PROMPT_TOKENS_7B, counted_flops

DS_DIR = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
DS_CONFIGS = ("zero2", "zero2_offload", "zero3", "zero3_offload")
GB = 1e9
FROZEN_BYTES = 2  # the OpenVLA checkpoint's bf16, kept by from_openvla (dtype=None)
BACKBONE_ACT_BYTES = 2  # the backbone runs under bf16 autocast on CUDA (backbone.bf16_autocast)


@dataclass(frozen=True)
class ModelCounts:
    """What the memory / FLOP model needs to know about one policy configuration."""

    lora: bool
    trainable: int
    frozen: int
    largest_layer: int  # parameters of the largest module (ZeRO-3 gathers one at a time)
    tokens: int  # backbone output tokens per observation
    hidden: int
    llm_layers: int
    llm_heads: int
    llm_params: int  # decoder weights without the embedding
    vision_flops: float  # per observation, forward
    head_flops: float  # per sample with K candidates: both heads, forward + backward
    head_activation_bytes: float  # per sample, fp32, saved for backward by both heads
    head_stack_bytes: (
        float  # per micro-batch, fp32: the stacked copies of both heads' weights kept for backward
    )
    adapters: int  # LLM passes per sample (2 with branch LoRA)


def count_model(config: PolicyConfig, candidates: int, prompt_tokens: int = PROMPT_TOKENS_7B) -> ModelCounts:
    """Parameter counts, FLOPs and head activations of ``config``'s DIPOLE training, on the meta device."""
    from vla_dipole.model.backbone import PrismaticBackbone
    from vla_dipole.model.head import DiffusionTrajectoryHead

    bb_cfg = config.effective_backbone()
    with torch.device("meta"):
        backbone = PrismaticBackbone(bb_cfg)
        heads = [
            DiffusionTrajectoryHead(config.head, backbone.hidden_size, config.observation.proprio_dim)
            for _ in range(2)
        ]
    backbone_train = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    backbone_all = sum(p.numel() for p in backbone.parameters())
    head_params = sum(p.numel() for h in heads for p in h.parameters())
    largest = max(
        sum(p.numel() for p in m.parameters(recurse=False))
        for m in [*backbone.modules(), *heads[0].modules()]
    )
    obs = config.observation
    n_images = obs.history_frames * len(obs.cameras)
    tokens = n_images * backbone.num_patches + prompt_tokens
    with torch.device("meta"), torch.no_grad():
        pixels = torch.zeros(1, n_images, 6, bb_cfg.image_size, bb_cfg.image_size)
        vision = counted_flops(lambda: backbone.embed_images(pixels))
    llm = backbone.language_model.get_decoder()
    llm_params = sum(
        p.numel() for n, p in llm.named_parameters() if "embed_tokens" not in n and "lora_" not in n
    )
    head_flops, saved, stacks = _head_training_cost(heads, backbone.hidden_size, tokens, candidates, config)
    return ModelCounts(
        lora=config.branch_lora.enabled,
        trainable=head_params + backbone_train,
        frozen=backbone_all - backbone_train,
        largest_layer=largest,
        tokens=tokens,
        hidden=backbone.hidden_size,
        llm_layers=bb_cfg.llm.num_hidden_layers,
        llm_heads=bb_cfg.llm.num_attention_heads,
        llm_params=llm_params,
        vision_flops=vision,
        head_flops=head_flops,
        head_activation_bytes=saved,
        head_stack_bytes=stacks,
        adapters=len(config.BRANCH_ADAPTERS) if config.branch_lora.enabled else 1,
    )


def _head_training_cost(heads, hidden: int, tokens: int, candidates: int, config: PolicyConfig):
    """(FLOPs, bytes saved for backward) of one sample through both heads: K candidates, then the human."""
    from vla_dipole.model.head import denoise_branches, prepare_branches, stack_heads

    saved: list[int] = []
    stacks: list[int] = []
    weights: set[int] = set()
    held: list[dict] = []

    seen: dict[int, torch.Tensor] = {}  # a tensor (or the base of views) saved by several ops counts once

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t if t._base is None else t._base
        if id(base) not in weights and id(base) not in seen:
            seen[id(base)] = base
            saved.append(base.numel() * base.element_size())
        return t

    def step() -> None:
        loss = 0
        for k in (candidates, 1):  # DIPOLE: both branches on the candidates, then on the logged trajectory
            params = stack_heads(heads)  # a stacked copy of both heads' weights per call, kept for backward
            held.append(params)  # alive until the end: their ids cannot be reused by other tensors
            weights.update(id(v) for v in params.values())
            stacks.append(sum(v.numel() * v.element_size() for v in params.values()))
            cond = torch.zeros(1, tokens, hidden)
            memory = prepare_branches(
                heads[0],
                params,
                cond,
                torch.ones(1, tokens, dtype=torch.bool),
                torch.zeros(1, heads[0].proprio_dim),
            )
            x = torch.zeros(1, k, config.head.horizon, config.head.action_dim)
            loss = (
                loss
                + denoise_branches(heads[0], params, x, torch.zeros(1, k, dtype=torch.long), memory).sum()
            )
        loss.backward()

    with torch.device("meta"):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            flops = counted_flops(step)
    return float(flops), float(sum(saved)), float(sum(stacks))


@dataclass(frozen=True)
class Setup:
    ds_config: str
    micro_batch: int
    gpus: int


def _ds(name: str) -> dict:
    return json.loads((DS_DIR / f"{name}.json").read_text())


def memory_per_gpu(m: ModelCounts, s: Setup) -> dict[str, float]:
    """Bytes per GPU (params, grads, optimizer, activations, total) and on CPU (offload) for one setup."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    ds = _ds(s.ds_config)
    zero = ds["zero_optimization"]
    stage = zero["stage"]
    bf16 = bool(ds.get("bf16", {}).get("enabled"))
    off_opt = "offload_optimizer" in zero
    off_param = "offload_param" in zero
    w, n, f = s.gpus, m.trainable, m.frozen
    p = 2 if bf16 else 4  # trainable weights (fresh heads, LoRA) train in fp32 unless DeepSpeed's bf16 is on
    f *= FROZEN_BYTES / p  # frozen weights stay as loaded from the checkpoint (bf16): counted in units of p
    # DeepSpeed's mixed-precision multipliers: 2 (16-bit params) + 18 / W (2 grads16 + 4 grads32 +
    # 4 params32 + 8 Adam m, v); in fp32: 4 params + (4 grads + 8 Adam) / W, no master copy
    grads_b, opt_b = (6, 12) if bf16 else (4, 8)
    cpu = 0.0
    if stage == 2:
        ds_cpu, ds_gpu = estimate_zero2_model_states_mem_needs(n, w, 1, cpu_offload=off_opt)
        params = p * (n + f)
        grads, optim = (0.0, 0.0) if off_opt else (grads_b * n / w, opt_b * n / w)
        cpu = ds_cpu if off_opt else 0.0
    else:
        ds_cpu, ds_gpu, _ = estimate_zero3_model_states_mem_needs(
            n, m.largest_layer, w, 1, cpu_offload=off_opt, cpu_offload_params=off_param, zero_init=True
        )
        gathered = 4 * m.largest_layer  # DeepSpeed's "largest layer memory"
        params = gathered + (0.0 if off_param else p * (n + f) / w)
        grads, optim = (0.0, 0.0) if off_opt else (grads_b * n / w, opt_b * n / w)
        cpu = ds_cpu + (p * f if off_param else 0.0) if off_param or off_opt else 0.0
    act = s.micro_batch * activations_per_sample(m, p) + m.head_stack_bytes * p / 4
    total = params + grads + optim + act
    ds_states = ds_gpu + (p * f if stage == 2 else (0 if off_param else p * f / w))
    return dict(params=params, grads=grads, optim=optim, act=act, total=total, cpu=cpu, ds_states=ds_states)


def activations_per_sample(m: ModelCounts, p: int) -> float:
    """Bytes kept for backward per sample: heads (measured in fp32, at p bytes), backbone tokens and,
    with LoRA, the LLM's under gradient checkpointing (bf16 autocast)."""
    heads = m.head_activation_bytes * p / 4
    b = BACKBONE_ACT_BYTES
    tokens = m.tokens * m.hidden * b * m.adapters
    if not m.lora:
        return heads + tokens
    s, h, a = m.tokens, m.hidden, m.llm_heads
    checkpoints = m.llm_layers * s * h * b
    one_layer = (34 * s * h + 5 * a * s * s) * b / 2
    return heads + tokens + m.adapters * (checkpoints + one_layer)


def flops_per_sample(m: ModelCounts) -> float:
    """Training FLOPs of one scene: vision forward, LLM forward (x3 with LoRA: + input grads + recompute)
    per adapter, both heads forward + backward."""
    llm_fwd = 2 * m.llm_params * m.tokens + 4 * m.llm_layers * m.tokens**2 * m.hidden
    llm = m.adapters * llm_fwd * (3 if m.lora else 1)
    return m.vision_flops + llm + m.head_flops


def table(
    model: str = "openvla-7b",
    micro_batches: Sequence[int] = (1, 4),
    gpus: Sequence[int] = (8,),
    candidates: int = 24,
    gpu_gb: float = 80.0,
) -> str:
    base = PolicyConfig.preset(model)
    counts = {
        lora: count_model(replace(base, branch_lora=replace(base.branch_lora, enabled=lora)), candidates)
        for lora in (False, True)
    }
    lines = [
        f"{model}: per-GPU GB (1e9 bytes) for DIPOLE training, K={candidates} candidates + the logged trajectory "
        f"per scene, {counts[False].tokens} backbone tokens ({PROMPT_TOKENS_7B} assumed prompt tokens)",
    ]
    for lora, m in counts.items():
        lines.append(
            f"  LoRA {'on ' if lora else 'off'}: {m.trainable / 1e6:,.0f} M trainable, {m.frozen / 1e9:.2f} B frozen "
            f"parameters; {flops_per_sample(m) / 1e12:.2f} TFLOP per training sample"
        )
    head = (
        f"{'deepspeed':<15}{'LoRA':>5}{'GPUs':>5}{'micro':>6}{'params':>8}{'grads':>7}{'optim':>7}{'activ':>7}"
        f"{'total':>8}{'DS est':>8}{'CPU':>7}  fits {gpu_gb:.0f} GB"
    )
    lines += ["", head, "-" * len(head)]
    rows = []
    for ds in DS_CONFIGS:
        for lora, m in counts.items():
            for w in gpus:
                for mb in micro_batches:
                    r = memory_per_gpu(m, Setup(ds, mb, w))
                    rows.append((ds, lora, w, mb, r))
                    fits = r["total"] < 0.9 * gpu_gb * GB  # 10 % for the CUDA context, buffers, fragmentation
                    lines.append(
                        f"{ds:<15}{'on' if lora else 'off':>5}{w:>5}{mb:>6}"
                        + "".join(
                            f"{r[k] / GB:>{wd}.1f}"
                            for k, wd in (
                                ("params", 8),
                                ("grads", 7),
                                ("optim", 7),
                                ("act", 7),
                                ("total", 8),
                                ("ds_states", 8),
                                ("cpu", 7),
                            )
                        )
                        + f"  {'yes' if fits else 'no'}"
                    )
    lines += [
        "",
        "params / grads / optim: model states per GPU (trainable by DeepSpeed's accounting, frozen weights "
        "replicated (ZeRO-2) or partitioned (ZeRO-3)); DS est: DeepSpeed's estimator for the trainable states "
        "plus the frozen weights (mixed precision); CPU: offloaded states (all ranks of the node); fits: total "
        "< 90 % of the GPU",
        "",
        "Smallest setup that fits (fewest GPUs, then no offload), LoRA on:",
    ]
    for size in sorted({24.0, 40.0, gpu_gb}):
        for mb in micro_batches:
            ok = [
                (w, "offload" in ds, ds)
                for ds, lora, w, b, r in rows
                if lora and b == mb and r["total"] < 0.9 * size * GB
            ]
            best = min(ok, default=None)
            what = (
                f"{best[0]} x {size:.0f} GB with {best[2]}.json" if best else "none of the listed GPU counts"
            )
            lines.append(f"  {size:>4.0f} GB GPUs, micro-batch {mb}: {what}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="openvla-7b")
    p.add_argument("--micro-batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--gpus", type=int, nargs="+", default=[8])
    p.add_argument(
        "--candidates", type=int, default=24, help="K candidates per scene (shards' num_candidates)"
    )
    p.add_argument("--gpu-gb", type=float, default=80.0)
    a = p.parse_args(argv)
    print(table(a.model, a.micro_batch, a.gpus, a.candidates, a.gpu_gb))


if __name__ == "__main__":
    main()
