"""The ONE table of training stages: what each trains, on which inputs, with which loss.

- bc:     mean ||eps - eps+||^2 on the human trajectory (the reference policy mu); pi- stays frozen;
          + bc.aux_weight * the trajectory probe's regression error when that weight is > 0.
- dipole: mean(w+ err+ + w- err-) over every candidate, w+ = sigmoid(beta A + k), w- = 1 - w+
          (stop-gradient), plus an optional BC anchor on the human trajectory for both heads.
- awr:    mean(min(exp(beta A), clip) err+) over every candidate, one head (the baseline DIPOLE replaces).

Config validation, `train.py --help`, which heads train, the module DeepSpeed wraps (`TrainModule`)
and the loss all read this table; a new stage is one more row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from vla_dipole.losses import awr_weights, dichotomous_loss, dipole_weights, weighted_loss
from vla_dipole.training.objective import candidate_advantages

Errors = dict[str, torch.Tensor]
LossResult = tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    candidates: bool  # trains on the shards' scored candidates (online rounds resample them)
    trains_neg: bool  # trains pi- as well as pi+ (else pi- stays frozen)
    # (policy, cond, human, noise_h, t_h, candidates, noise_c, t_c) -> per-sample errors the loss weights
    errors: Callable[..., Errors]
    loss: Callable[[DictConfig, Errors, dict], LossResult]


def _bc_errors(policy: Any, cond: Any, human, noise_h, t_h, candidates, noise_c, t_c) -> Errors:
    return {"human_pos": policy.bc_error(cond, human, noise_h, t_h)[:, 0]}


def _dipole_errors(policy: Any, cond: Any, human, noise_h, t_h, candidates, noise_c, t_c) -> Errors:
    pos, neg = policy.branch_errors(cond, candidates, noise_c, t_c)
    hp, hn = policy.branch_errors(cond, human, noise_h, t_h)
    return {"cand_pos": pos, "cand_neg": neg, "human_pos": hp[:, 0], "human_neg": hn[:, 0]}


def _awr_errors(policy: Any, cond: Any, human, noise_h, t_h, candidates, noise_c, t_c) -> Errors:
    return {"cand_pos": policy.bc_error(cond, candidates, noise_c, t_c)}


def _bc_loss(cfg: DictConfig, errors: Errors, batch: dict) -> LossResult:
    loss, stats = weighted_loss(errors["human_pos"], torch.ones_like(errors["human_pos"]))
    logged = {"loss_bc": stats["loss"]}
    if "aux" in errors:  # the trajectory probe of bc.aux_weight (training/trajectory_probe.py)
        aux = errors["aux"].mean()
        loss = loss + float(cfg.bc.aux_weight) * aux
        logged["loss_aux"] = aux.detach()
    return loss, {"loss": loss.detach(), **logged}, {}


def _reward_stats(batch: dict, cfg: DictConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    rewards, adv = candidate_advantages(batch, cfg)
    stats = {
        "reward_mean": rewards.mean(),
        "reward_std": rewards.std(unbiased=False),
        "reward_max": rewards.max(),
        "adv_abs_mean": adv.abs().mean(),
    }
    return adv, stats


def _dipole_loss(cfg: DictConfig, errors: Errors, batch: dict) -> LossResult:
    adv, reward_stats = _reward_stats(batch, cfg)
    w_pos, w_neg = dipole_weights(adv, beta=float(cfg.dipole.beta), k=float(cfg.dipole.k))
    loss, raw = dichotomous_loss(errors["cand_pos"], errors["cand_neg"], w_pos, w_neg)
    hists = {"w_pos": raw.pop("w_pos_values")}
    stats = {k: v for k, v in raw.items() if not k.startswith("w_pos_q") or k == "w_pos_q50"}
    if float(cfg.dipole.bc_anchor) > 0:
        anchor = errors["human_pos"].mean() + errors["human_neg"].mean()
        loss = loss + float(cfg.dipole.bc_anchor) * anchor
        stats["loss_bc_anchor"] = anchor.detach()
        stats["loss"] = loss.detach()
    stats.update(reward_stats)
    return loss, stats, hists


def _awr_loss(cfg: DictConfig, errors: Errors, batch: dict) -> LossResult:
    adv, reward_stats = _reward_stats(batch, cfg)
    w = awr_weights(adv, beta=float(cfg.awr.beta), clip=float(cfg.awr.clip))
    loss, raw = weighted_loss(errors["cand_pos"], w)
    hists = {"w_awr": raw.pop("w_values")}
    stats = {k: v for k, v in raw.items() if not k.startswith("w_q") or k == "w_q50"}
    stats.update(reward_stats)
    return loss, stats, hists


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "bc",
            "behaviour cloning of the logged trajectory: the reference policy mu (head pi+)",
            candidates=False,
            trains_neg=False,
            errors=_bc_errors,
            loss=_bc_loss,
        ),
        Stage(
            "dipole",
            "pi+ / pi- with w+ = sigmoid(beta A + k), w- = 1 - w+ (init_from=<bc policy>, dipole.rounds=R)",
            candidates=True,
            trains_neg=True,
            errors=_dipole_errors,
            loss=_dipole_loss,
        ),
        Stage(
            "awr",
            "the exp-weighted baseline, weight min(exp(beta A), clip) (init_from=<bc policy>)",
            candidates=True,
            trains_neg=False,
            errors=_awr_errors,
            loss=_awr_loss,
        ),
    )
}


def get_stage(name: str) -> Stage:
    """The stage called `name`; an error naming the config field and the known stages otherwise."""
    if name not in STAGES:
        raise ValueError(f"config field 'stage': expected one of {tuple(STAGES)}, got {name!r}")
    return STAGES[name]


def stage_loss(stage: str, cfg: DictConfig, errors: Errors, batch: dict) -> LossResult:
    """(loss, scalar stats, histograms) of one micro-batch; `errors` holds the per-sample squared errors."""
    return get_stage(stage).loss(cfg, errors, batch)
