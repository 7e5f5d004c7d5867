"""``DrivingProcessor``: a raw sample or a loader batch -> model inputs; trajectories <-> actions.

Inputs follow the shard loader's batch (docs/shards.md): ``images`` uint8 [B, N, h, w, 3] in
history-major order (frame 0's cameras, frame 1's cameras, ...), ``ego_pose`` [B, H, 3],
``ego_velocity`` / ``ego_acceleration`` [B, H, 2], ``driving_command`` [B, H, 4]; a single unbatched
sample (``images`` [N, h, w, 3], ...) is accepted too. A precomputed ``pixel_values``
[B, N, 6, S, S] (the loader's ``image_transform="openvla"``) is used as is.

Actions are the future poses as (x, y, cos yaw, sin yaw), optionally relative to the constant-velocity
rollout, standardised per waypoint by the ``TrajectoryNormalizer`` statistics (stored in the
checkpoint; fitted on the training shards, or the manifest's ``traj_stats``). Going through cos / sin
keeps the heading continuous for the diffusion model.
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
    """(x, y, heading) [..., L, 3] <-> standardised (x, y, cos, sin) [..., L, 4]; stats are buffers.

    ``mean`` / ``std`` are per waypoint and per action dimension [L, 4]: the spread of x at 0.5 s is
    centimetres, at 4 s metres, and one global scale would give the early waypoints metres of noise.
    With ``residual`` the constant-velocity rollout (current speed along the current heading) is
    subtracted first, so the model learns the deviation from it; the current speed is then an
    argument of ``normalize`` / ``denormalize`` (``current_speed`` reads it from the proprio vector).
    """

    def __init__(self, horizon: int = 8, residual: bool = False, dt: float = 0.5) -> None:
        super().__init__()
        self.residual = residual
        self.register_buffer("mean", torch.zeros(horizon, 4))
        self.register_buffer("std", torch.ones(horizon, 4))
        self.register_buffer(
            "times", dt * torch.arange(1, horizon + 1, dtype=torch.float32), persistent=False
        )

    def set_stats(self, stats: Any) -> None:
        """Per-waypoint [L, 4] mean / std, or the x, y entries of a ``TrajectoryStats``, a manifest's
        ``traj_stats`` dict or a (mean, std) pair (then shared by every waypoint; cos / sin unscaled)."""
        if isinstance(stats, Mapping):
            mean, std = stats.get("mean"), stats.get("std")
        elif isinstance(stats, tuple) and len(stats) == 2:
            mean, std = stats
        else:
            mean, std = stats.mean, stats.std
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if mean.shape == self.mean.shape == std.shape:
            full_mean, full_std = mean, std
        else:
            mean, std = mean.flatten()[:2], std.flatten()[:2]
            full_mean, full_std = torch.zeros_like(self.mean), torch.ones_like(self.std)
            if mean.shape == (2,) and std.shape == (2,):
                full_mean[:, :2], full_std[:, :2] = mean, std
        if (
            full_mean.shape != self.mean.shape
            or full_std.shape != self.std.shape
            or not bool((full_std > 0).all())
        ):
            raise ValueError(
                f"trajectory stats: expected x, y mean / std (or per-waypoint {tuple(self.mean.shape)}) "
                f"with std > 0, got {mean}, {std}"
            )
        self.mean.copy_(full_mean)
        self.std.copy_(full_std)

    def fit(self, traj: torch.Tensor, speed: torch.Tensor | None = None, min_std: float = 0.02) -> None:
        """Per-waypoint statistics of trajectories [N, L, 3] (and their current speeds [N] if residual)."""
        raw = self._raw_actions(torch.as_tensor(traj, dtype=torch.float32), speed)
        flat = raw.reshape(-1, *self.mean.shape)
        self.set_stats((flat.mean(0), flat.std(0, unbiased=False).clamp_min(min_std)))

    def _cv_x(self, speed: torch.Tensor | None, ndim: int) -> torch.Tensor | float:
        """x of the constant-velocity rollout, shaped to broadcast over [..., L] (0 without residual)."""
        if not self.residual:
            return 0.0
        if speed is None:
            raise ValueError("residual actions need the current speed (normalize / denormalize speed=...)")
        speed = torch.as_tensor(speed, dtype=torch.float32, device=self.mean.device)
        times = self.times[: self.mean.shape[0]]
        return speed.reshape(*speed.shape, *([1] * (ndim - 1 - speed.ndim))) * times

    def _raw_actions(self, traj: torch.Tensor, speed: torch.Tensor | None) -> torch.Tensor:
        if traj.shape[-1] != 3:
            raise ValueError(f"trajectory: expected [..., 3] (x, y, heading), got {tuple(traj.shape)}")
        traj = traj.to(self.mean)
        x = traj[..., 0] - self._cv_x(speed, traj.ndim)
        h = traj[..., 2]
        return torch.stack([x, traj[..., 1], torch.cos(h), torch.sin(h)], dim=-1)

    def _stats(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """mean / std for `length` poses: per waypoint, or shared ones for any length."""
        if length == self.mean.shape[0]:
            return self.mean, self.std
        if bool((self.mean == self.mean[:1]).all() and (self.std == self.std[:1]).all()):
            return self.mean[:1], self.std[:1]
        raise ValueError(
            f"trajectory of {length} poses, the per-waypoint statistics cover {self.mean.shape[0]}"
        )

    def normalize(self, traj: torch.Tensor, speed: torch.Tensor | None = None) -> torch.Tensor:
        mean, std = self._stats(traj.shape[-2])
        return (self._raw_actions(traj, speed) - mean) / std

    def denormalize(self, actions: torch.Tensor, speed: torch.Tensor | None = None) -> torch.Tensor:
        if actions.shape[-1] != 4:
            raise ValueError(f"actions: expected [..., 4] (x, y, cos, sin), got {tuple(actions.shape)}")
        mean, std = self._stats(actions.shape[-2])
        a = actions * std.to(actions) + mean.to(actions)
        x = a[..., 0] + self._cv_x(speed, actions.ndim)
        return torch.stack([x, a[..., 1], torch.atan2(a[..., 3], a[..., 2])], dim=-1)


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
    def trajectory_to_actions(self, traj: torch.Tensor, speed: torch.Tensor | None = None) -> torch.Tensor:
        """(x, y, heading) [B, ..., 8, 3] -> normalised actions [B, ..., 8, 4]; `speed` [B] (``batch_speed``)."""
        return self.normalizer.normalize(traj, speed)

    def actions_to_trajectory(self, actions: torch.Tensor, speed: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised actions [B, ..., 8, 4] -> (x, y, heading) [B, ..., 8, 3]."""
        return self.normalizer.denormalize(actions, speed)


def batch_speed(batch: Mapping[str, Any]) -> torch.Tensor:
    """Current speed [B] of a loader batch (the constant-velocity rollout's speed)."""
    return _tensor(batch, "ego_velocity")[:, -1].float().norm(dim=-1)
