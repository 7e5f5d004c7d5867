"""The three training stages as functions of the heads' per-sample denoising errors.

- bc:     mean ||eps - eps+||^2 on the human trajectory (the reference policy mu).
- dipole: mean(w+ err+ + w- err-) over every candidate, w+ = sigmoid(beta A + k), w- = 1 - w+
          (stop-gradient), plus an optional BC anchor on the human trajectory for both heads.
- awr:    mean(min(exp(beta A), clip) err+) over every candidate, one head (the baseline DIPOLE replaces).

The diffusion noise and timesteps of a sample are drawn from a generator seeded by (seed, round,
stream position), so a sample gets the same noise on any rank, with any world size and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from vla_dipole.data.shard_format import SCORE_NAMES
from vla_dipole.losses import advantages, awr_weights, dichotomous_loss, dipole_weights, weighted_loss

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


def needs_candidates(stage: str) -> bool:
    return stage in ("dipole", "awr")


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


def stage_loss(
    stage: str, cfg: DictConfig, errors: dict[str, torch.Tensor], batch: dict
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(loss, scalar stats, histograms) of one micro-batch; `errors` holds the per-sample squared errors."""
    hists: dict[str, torch.Tensor] = {}
    if stage == "bc":
        loss, stats = weighted_loss(errors["human_pos"], torch.ones_like(errors["human_pos"]))
        stats = {"loss": stats["loss"], "loss_bc": stats["loss"]}
        return loss, stats, hists

    rewards, adv = candidate_advantages(batch, cfg)
    reward_stats = {
        "reward_mean": rewards.mean(),
        "reward_std": rewards.std(unbiased=False),
        "reward_max": rewards.max(),
        "adv_abs_mean": adv.abs().mean(),
    }
    if stage == "dipole":
        w_pos, w_neg = dipole_weights(adv, beta=float(cfg.dipole.beta), k=float(cfg.dipole.k))
        loss, raw = dichotomous_loss(errors["cand_pos"], errors["cand_neg"], w_pos, w_neg)
        hists["w_pos"] = raw.pop("w_pos_values")
        stats = {k: v for k, v in raw.items() if not k.startswith("w_pos_q") or k == "w_pos_q50"}
        if float(cfg.dipole.bc_anchor) > 0:
            anchor = errors["human_pos"].mean() + errors["human_neg"].mean()
            loss = loss + float(cfg.dipole.bc_anchor) * anchor
            stats["loss_bc_anchor"] = anchor.detach()
            stats["loss"] = loss.detach()
    elif stage == "awr":
        w = awr_weights(adv, beta=float(cfg.awr.beta), clip=float(cfg.awr.clip))
        loss, raw = weighted_loss(errors["cand_pos"], w)
        hists["w_awr"] = raw.pop("w_values")
        stats = {k: v for k, v in raw.items() if not k.startswith("w_q") or k == "w_q50"}
    else:
        raise ValueError(f"stage: expected one of bc, dipole, awr, got {stage!r}")
    stats.update(reward_stats)
    return loss, stats, hists
