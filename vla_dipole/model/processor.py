"""``DrivingProcessor``: a raw sample or a loader batch -> model inputs; trajectories <-> actions.

Inputs follow the shard loader's batch (docs/shards.md): ``images`` uint8 [B, N, h, w, 3] in
history-major order (frame 0's cameras, frame 1's cameras, ...), ``ego_pose`` [B, H, 3],
``ego_velocity`` / ``ego_acceleration`` [B, H, 2], ``driving_command`` [B, H, 4]; a single unbatched
sample (``images`` [N, h, w, 3], ...) is accepted too. A precomputed ``pixel_values``
[B, N, 6, S, S] (the loader's ``image_transform="openvla"``) is used as is.

Actions are the future poses as (x, y, cos yaw, sin yaw) with x, y standardised by the
``TrajectoryNormalizer`` statistics (stored in the checkpoint; typically the shard manifest's
``traj_stats``). Going through cos / sin keeps the heading continuous for the diffusion model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.image_processing import PrismaticImageProcessor
from vla_dipole.model.obs_encoder import ego_features
from vla_dipole.model.prompt import driving_prompt_ids

EGO_KEYS = ("ego_pose", "ego_velocity", "ego_acceleration", "driving_command")


@dataclass
class PolicyInputs:
    """What the backbone and heads consume."""

    pixel_values: torch.Tensor  # [B, n_images, 6, S, S]
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    proprio: torch.Tensor  # [B, P]

    def to(self, device: torch.device | str) -> PolicyInputs:
        return PolicyInputs(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]


class TrajectoryNormalizer(nn.Module):
    """(x, y, heading) [..., 3] <-> normalised (x, y, cos, sin) [..., 4]; stats are buffers (checkpointed)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(2))
        self.register_buffer("std", torch.ones(2))

    def set_stats(self, stats: Any) -> None:
        """From a ``TrajectoryStats``, a manifest's ``traj_stats`` dict or a (mean, std) pair."""
        if isinstance(stats, Mapping):
            mean, std = stats.get("mean"), stats.get("std")
        elif isinstance(stats, tuple) and len(stats) == 2:
            mean, std = stats
        else:
            mean, std = stats.mean, stats.std
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32)[:2])
        std = torch.as_tensor(np.asarray(std, dtype=np.float32)[:2])
        if mean.shape != (2,) or std.shape != (2,) or not bool((std > 0).all()):
            raise ValueError(
                f"trajectory stats: expected mean/std with x, y entries and std > 0, got {mean}, {std}"
            )
        self.mean.copy_(mean)
        self.std.copy_(std)

    def normalize(self, traj: torch.Tensor) -> torch.Tensor:
        if traj.shape[-1] != 3:
            raise ValueError(f"trajectory: expected [..., 3] (x, y, heading), got {tuple(traj.shape)}")
        traj = traj.to(self.mean.dtype)
        xy = (traj[..., :2] - self.mean) / self.std
        return torch.cat([xy, torch.cos(traj[..., 2:]), torch.sin(traj[..., 2:])], dim=-1)

    def denormalize(self, actions: torch.Tensor) -> torch.Tensor:
        if actions.shape[-1] != 4:
            raise ValueError(f"actions: expected [..., 4] (x, y, cos, sin), got {tuple(actions.shape)}")
        xy = actions[..., :2] * self.std.to(actions) + self.mean.to(actions)
        return torch.cat([xy, torch.atan2(actions[..., 3:], actions[..., 2:3])], dim=-1)


def _tensor(batch: Mapping[str, Any], key: str) -> torch.Tensor:
    if key not in batch:
        raise KeyError(f"batch: missing field {key!r} (have {sorted(batch)})")
    v = batch[key]
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))


class DrivingProcessor:
    """Images -> pixel values, command / speed -> prompt ids, ego status -> proprio features."""

    def __init__(
        self, config: PolicyConfig, tokenizer, normalizer: TrajectoryNormalizer | None = None
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.normalizer = normalizer if normalizer is not None else TrajectoryNormalizer()
        self.images = PrismaticImageProcessor.from_config(config.backbone)

    def __call__(self, batch: Mapping[str, Any] | PolicyInputs) -> PolicyInputs:
        if isinstance(batch, PolicyInputs):
            return batch
        obs = self.config.observation
        batched = "pixel_values" in batch and _tensor(batch, "pixel_values").ndim == 5
        batched = batched or ("images" in batch and _tensor(batch, "images").ndim == 5)
        ego = {k: _tensor(batch, k) for k in EGO_KEYS}
        if not batched:
            ego = {k: v.unsqueeze(0) for k, v in ego.items()}
        proprio = ego_features(*(ego[k] for k in EGO_KEYS), ego_history=obs.ego_history)
        command = ego["driving_command"][:, -1].float()
        speed = ego["ego_velocity"][:, -1].float().norm(dim=-1) if obs.prompt_speed else None
        input_ids, attention_mask = driving_prompt_ids(
            self.tokenizer, command, speed, max_length=self.config.backbone.max_length
        )
        return PolicyInputs(self._pixel_values(batch, batched), input_ids, attention_mask, proprio)

    def _pixel_values(self, batch: Mapping[str, Any], batched: bool) -> torch.Tensor:
        obs = self.config.observation
        key = "pixel_values" if "pixel_values" in batch else "images"
        x = _tensor(batch, key)
        x = x if batched else x.unsqueeze(0)
        n_cams, want = len(obs.cameras), obs.num_images
        if x.ndim != 5 or x.shape[1] % n_cams or x.shape[1] < want:
            raise ValueError(
                f"batch field {key!r}: expected [B, H * {n_cams}, ...] with at least {want} images "
                f"(cameras {obs.cameras} x history_frames {obs.history_frames}, history-major), got {tuple(x.shape)}"
            )
        x = x[:, -want:]  # the last history frames, every camera
        if key == "pixel_values":
            return x.float()
        return self.images(x)

    # ---- actions -------------------------------------------------------------------------------------
    def trajectory_to_actions(self, traj: torch.Tensor) -> torch.Tensor:
        """(x, y, heading) [..., 8, 3] -> normalised actions [..., 8, 4]."""
        return self.normalizer.normalize(traj)

    def actions_to_trajectory(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions [..., 8, 4] -> (x, y, heading) [..., 8, 3]."""
        return self.normalizer.denormalize(actions)
