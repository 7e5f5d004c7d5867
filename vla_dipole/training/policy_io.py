"""Everything the training loop needs to know about `DipolePolicy`, in one place.

- which parameters each stage trains (bc / awr: pi+ only; dipole: pi+ and pi-; plus whatever the
  model config leaves trainable in the backbone, e.g. LoRA);
- `TrainModule`: the ONE module DeepSpeed wraps; its forward returns the per-sample errors the stage
  losses weight. The heads read their parameters through `stack_heads` (not through their
  submodules' forward), so under ZeRO-3 the parameters are registered as external parameters of the
  wrapper: DeepSpeed then gathers them for the forward and reduce-scatters their gradients;
- building / initialising the policy (BC checkpoint -> pi+ and pi- start from the BC head) and
  exporting it (`save_pretrained`, gathered under ZeRO-3, EMA weights when enabled).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from torch import nn

from vla_dipole.data.shard_io import read_manifest
from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.policy import Conditioning, DipolePolicy
from vla_dipole.model.processor import batch_speed
from vla_dipole.training.config import ConfigError
from vla_dipole.training.distributed import gathered_params
from vla_dipole.training.indexed_data import IndexedShards
from vla_dipole.training.objective import Noise
from vla_dipole.training.stages import STAGES, get_stage
from vla_dipole.training.trajectory_probe import TrajectoryProbe

TRAINING_META = "training_meta.json"


class NonFiniteError(RuntimeError):
    """A non-finite loss or weight: training stops before it steps on it or exports it."""


def check_finite_loss(
    accelerator: Accelerator, loss: torch.Tensor, batch: dict[str, Any], where: str
) -> None:
    """Raise (on every rank alike) before backward when any rank's loss is NaN / inf."""
    bad = torch.tensor([0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, "sum")
    if float(bad.item()) > 0:
        tokens = batch.get("token", [])
        raise NonFiniteError(
            f"{where}: loss is {float(loss.detach()):.4g} (non-finite) on some rank; not stepping on it. "
            f"This rank's batch: {list(tokens)[:8]}. The last checkpoint is intact; check the data "
            "(python -m data_prep.validate) or lower optim.lr"
        )


def check_finite_weights(module: nn.Module, what: str) -> None:
    """Raise naming the tensors when any parameter is NaN / inf (never export such a policy)."""
    bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
    if bad:
        raise NonFiniteError(f"{what}: {len(bad)} tensors hold NaN/inf (e.g. {bad[:3]}); not exporting them")


def build_policy(cfg: DictConfig) -> DipolePolicy:
    """A fresh policy from `model`, or `init_from` (a save_pretrained dir); sets trainability for the stage."""
    stage = get_stage(cfg.stage)
    if cfg.init_from:
        path = Path(cfg.init_from)
        if not path.is_dir():
            raise ConfigError(
                f"config field 'init_from': {path} is not a directory (a policy saved by train.py)"
            )
        policy = DipolePolicy.from_pretrained(path)
        meta_file = path / TRAINING_META
        init_stage = json.loads(meta_file.read_text()).get("stage") if meta_file.is_file() else None
        if stage.trains_neg and not (init_stage in STAGES and STAGES[init_stage].trains_neg):
            policy.copy_pos_to_neg()  # pi+ and pi- both start from the BC (or AWR) head
    else:
        if stage.trains_neg:
            print(
                f"[train] warning: stage={cfg.stage} without init_from starts pi+/pi- from random heads",
                flush=True,
            )
        policy = DipolePolicy.from_config(PolicyConfig.from_dict(cfg.model, source="config field 'model'"))
    if not stage.trains_neg:
        policy.head_neg.requires_grad_(False)
    return policy


def set_trajectory_stats(policy: DipolePolicy, dirs: list[Path]) -> None:
    """A fresh policy's action statistics: fitted per waypoint on the shards' human trajectories
    (``action.per_waypoint_stats``), else the x, y statistics of the first manifest."""
    if not policy.config.action.per_waypoint_stats:
        policy.set_trajectory_stats(read_manifest(dirs[0])["traj_stats"])
        return
    data = IndexedShards(dirs, decode_images=False)
    samples = [data[i] for i in range(len(data))]
    human = torch.as_tensor(np.stack([s["human"] for s in samples]))
    speed = torch.as_tensor(np.stack([s["ego_velocity"][-1] for s in samples])).float().norm(dim=-1)
    policy.normalizer.fit(human, speed)


class TrainModule(nn.Module):
    """The module DeepSpeed wraps: backbone (or cached features) + heads -> per-sample errors."""

    def __init__(
        self, policy: DipolePolicy, stage: str, zero3: bool = False, aux_probe: bool = False
    ) -> None:
        super().__init__()
        self.policy = policy
        self.stage = get_stage(stage)
        # registered after the policy, so the policy's parameters come first (the EMA covers only those)
        self.probe = (
            TrajectoryProbe(
                policy.backbone.hidden_size, policy.config.observation.proprio_dim, *action_shape(policy)
            )
            if aux_probe
            else None
        )
        if zero3:
            import deepspeed

            for head in (policy.head_pos, policy.head_neg):
                for p in head.parameters():
                    deepspeed.zero.register_external_parameter(self, p)

    def forward(
        self,
        human: torch.Tensor,
        noise_h: torch.Tensor,
        t_h: torch.Tensor,
        batch: dict[str, Any] | None = None,
        cond: Conditioning | None = None,
        candidates: torch.Tensor | None = None,
        noise_c: torch.Tensor | None = None,
        t_c: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Actions are normalised [B, K, 8, 4]; `cond` (cached features) replaces running the backbone."""
        if cond is None:
            cond = self.policy.encode(batch)
        errors = self.stage.errors(self.policy, cond, human, noise_h, t_h, candidates, noise_c, t_c)
        if self.probe is not None:
            errors["aux"] = self.probe.error(cond, human[:, 0])
        return errors


def forward_inputs(
    policy: DipolePolicy, batch: dict[str, Any], noise: Noise, features: Conditioning | None, stage: str
) -> dict[str, Any]:
    """Keyword arguments of `TrainModule.forward` for one micro-batch."""
    device = policy.device
    speed = batch_speed(batch).to(device)

    def to_actions(traj: torch.Tensor) -> torch.Tensor:
        return policy.processor.trajectory_to_actions(traj.to(device), speed)

    kw: dict[str, Any] = {
        "human": to_actions(batch["human"]).unsqueeze(1),
        "noise_h": noise.human.to(device).unsqueeze(1),
        "t_h": noise.human_t.to(device).unsqueeze(1),
    }
    if features is not None:
        kw["cond"] = Conditioning(*(t.to(device) for t in (features.tokens, features.mask, features.proprio)))
    else:
        kw["batch"] = batch
    if noise.candidates is not None:
        kw["candidates"] = to_actions(batch["candidates"])
        kw["noise_c"] = noise.candidates.to(device)
        kw["t_c"] = noise.candidates_t.to(device)
    return kw


def action_shape(policy: DipolePolicy) -> tuple[int, int]:
    return policy.config.head.horizon, policy.config.head.action_dim


def num_train_timesteps(policy: DipolePolicy) -> int:
    return int(policy.config.diffusion.num_train_timesteps)


def phase_samples(cfg: DictConfig, round_: int) -> int:
    """Training samples of the offline phase (round 0) or of one online round."""
    if round_ > 0 and cfg.dipole.round_samples:
        return int(cfg.dipole.round_samples)
    return int(cfg.schedule.total_samples)


def finish_step(accelerator: Accelerator, model: nn.Module, optimizer: Any, grad_clip: float) -> float:
    """Clip, step and zero the grads (DeepSpeed did all of it in backward); returns the global grad norm."""
    if hasattr(model, "get_global_grad_norm"):  # DeepSpeed engine: clipping is in its config
        norm = model.get_global_grad_norm()
        optimizer.step()
        optimizer.zero_grad()
        return float(norm) if norm is not None else float("nan")
    params = [p for p in model.parameters() if p.requires_grad]
    norm = accelerator.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if not bool(torch.isfinite(torch.as_tensor(norm))):  # finite loss, overflowing gradients
        raise NonFiniteError(f"gradient norm is {float(norm)}; not stepping on it (lower optim.lr)")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


@contextlib.contextmanager
def _published_weights(accelerator: Accelerator, policy: DipolePolicy, ema: Any, what: str) -> Iterator[bool]:
    """The weights a round or an export publishes, in place for the body: gathered under ZeRO-3, the EMA
    weights when enabled, checked finite; restored after. Yields whether this is the main process
    (the only one that should read them)."""
    params = list(policy.parameters())
    with gathered_params(accelerator, params):
        main = accelerator.is_main_process
        trainable = [p for p in params if p.requires_grad]
        backup = [p.detach().clone() for p in trainable] if (main and ema is not None) else None
        try:
            if backup is not None:
                ema.copy_to(trainable)
            if main:
                check_finite_weights(policy, what)
            yield main
        finally:
            if backup is not None:
                with torch.no_grad():
                    for p, b in zip(trainable, backup, strict=True):
                        p.copy_(b)
    accelerator.wait_for_everyone()


def export(accelerator: Accelerator, policy: DipolePolicy, ema: Any, directory: Path, stage: str) -> Path:
    """save_pretrained the policy (full weights gathered under ZeRO-3; EMA weights if enabled), rank 0 writes."""
    directory = Path(directory)
    with _published_weights(accelerator, policy, ema, f"policy export to {directory}") as main:
        if main:
            policy.save_pretrained(directory)
            (directory / TRAINING_META).write_text(json.dumps({"stage": stage, "ema": ema is not None}))
    return directory


def inference_copy(
    accelerator: Accelerator, policy: DipolePolicy, ema: Any, what: str
) -> DipolePolicy | None:
    """On rank 0, a CPU copy of the policy as `export` would save it (EMA weights, gathered), without the
    disk: what an online round samples its candidates from. None on the other ranks."""
    state = None
    with _published_weights(accelerator, policy, ema, what) as main:
        if main:
            state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    if state is None:
        return None
    # built like DipolePolicy.from_pretrained builds it: the same modules, then every tensor loaded
    if policy.config.pretrained_backbone is None:
        copy = DipolePolicy(policy.config, tokenizer=policy.processor.tokenizer)
    else:
        copy = DipolePolicy.from_config(policy.config)
        copy.processor.tokenizer = policy.processor.tokenizer
    copy.load_state_dict(state)
    return copy.eval()
