"""What the stages' losses share (the table of stages and their losses is `stages`): candidate
advantages, and the per-sample diffusion noise.

The diffusion noise and timesteps of a sample are drawn from a generator seeded by (seed, round,
stream position), so a sample gets the same noise on any rank, with any world size and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from vla_dipole.data.shard_format import SCORE_NAMES
from vla_dipole.losses import advantages

ADVANTAGE_MODE = {
    "pdms": ("pdms", "group_std"),
    "epdms": ("epdms", "group_std"),
    "baseline": ("pdms", "raw_minus_baseline"),
}


@dataclass
class Noise:
    """Per-sample diffusion inputs: human (B, H, D) + (B,), candidates (B, K, H, D) + (B, K)."""

    human: torch.Tensor
    human_t: torch.Tensor
    candidates: torch.Tensor | None
    candidates_t: torch.Tensor | None


def step_seed(seed: int, rank: int, round_: int, step: int) -> int:
    """Seed of the global RNGs for one optimizer step on one rank (so a resumed step draws the same)."""
    return int(np.random.SeedSequence([seed, rank, round_, step, 1]).generate_state(1)[0])


def sample_noise(
    positions: np.ndarray,
    action_shape: tuple[int, int],
    num_candidates: int,
    num_train_timesteps: int,
    seed: int,
    round_: int,
) -> Noise:
    """Noise and timesteps for the samples at stream `positions` (world-size and resume independent)."""
    hs, hts, cs, cts = [], [], [], []
    for pos in positions.tolist():
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, round_, pos, 0]).generate_state(1)[0])
        )
        hs.append(torch.randn(action_shape, generator=gen))
        hts.append(torch.randint(0, num_train_timesteps, (), generator=gen))
        if num_candidates:
            cs.append(torch.randn((num_candidates, *action_shape), generator=gen))
            cts.append(torch.randint(0, num_train_timesteps, (num_candidates,), generator=gen))
    return Noise(
        torch.stack(hs),
        torch.stack(hts),
        torch.stack(cs) if cs else None,
        torch.stack(cts) if cts else None,
    )


def candidate_advantages(batch: dict, cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, advantages) [B, K] of the batch's candidates, as chosen by `dipole.advantage`."""
    column, mode = ADVANTAGE_MODE[cfg.dipole.advantage]
    rewards = batch["candidate_scores"][..., SCORE_NAMES.index(column)].float()
    adv = advantages(
        rewards,
        mode=mode,
        baseline=float(cfg.dipole.baseline) if mode == "raw_minus_baseline" else None,
        std_floor=float(cfg.dipole.adv_std_floor),
    )
    return rewards, adv
