"""A training-only probe for BC (`bc.aux_weight`): regress the logged trajectory from what the heads read.

A vision path trained from scratch gets its only gradient through the diffusion loss, whose target is
noise at a random timestep; at low noise the conditioning barely matters, so the towers learn slowly what
is ahead. The probe (masked mean of the backbone tokens + the proprio features -> MLP -> the normalised
actions) adds a direct, low-variance regression gradient to the same tokens, like the auxiliary
perception losses of end-to-end driving models. It lives in `TrainModule`, not in the policy: exports,
EMA and sampling never see it. (`vla_dipole.pretrain`'s read-out regresses the same target before BC,
through a learned attention query; the probe mean-pools, which is what was measured.)
"""

from __future__ import annotations

import torch
from torch import nn

from vla_dipole.model.policy import Conditioning


class TrajectoryProbe(nn.Module):
    """Conditioning -> normalised actions [B, horizon, action_dim]."""

    def __init__(self, token_dim: int, proprio_dim: int, horizon: int, action_dim: int, hidden: int = 256):
        super().__init__()
        self.shape = (horizon, action_dim)
        self.mlp = nn.Sequential(
            nn.LayerNorm(token_dim + proprio_dim),
            nn.Linear(token_dim + proprio_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, horizon * action_dim),
        )

    def forward(self, cond: Conditioning) -> torch.Tensor:
        if cond.tokens.ndim != 3:
            raise ValueError(
                f"bc.aux_weight: the probe reads one token set [B, T, D], got {tuple(cond.tokens.shape)} "
                "(branch-specific LoRA gives one per head; use it without the probe)"
            )
        mask = cond.mask.to(cond.tokens.dtype).unsqueeze(-1)
        pooled = (cond.tokens * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        out = self.mlp(torch.cat([pooled, cond.proprio.to(pooled.dtype)], dim=-1))
        return out.view(out.shape[0], *self.shape)

    def error(self, cond: Conditioning, actions: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared error [B] against the logged actions [B, horizon, action_dim]."""
        return ((self(cond) - actions.to(cond.tokens.dtype)) ** 2).mean(dim=(1, 2))
