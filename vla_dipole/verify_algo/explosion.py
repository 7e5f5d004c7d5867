"""Why DIPOLE: exponential weights explode at large beta, sigmoid weights stay bounded.

For each beta the same minibatches of mu samples are weighted by BC (w = 1), DIPOLE (w+, w-), clipped
AWR and raw AWR (``exp(beta A)``, the paper's Eq. 4); we report the weights' effective sample size,
their max/mean ratio and the gradient norm of the weighted denoising loss of one fixed eps-net.
"""

from __future__ import annotations

import math

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

from vla_dipole import losses
from vla_dipole.verify_algo.nets import EpsMLP

METHODS = ("bc", "dipole_pos", "dipole_neg", "awr_clip", "awr_raw")


def _weights(method: str, adv: Tensor, beta: float, k: float, clip: float) -> Tensor:
    if method == "bc":
        return torch.ones_like(adv)
    if method.startswith("dipole"):
        w_pos, w_neg = losses.dipole_weights(adv, beta, k)
        return w_pos if method == "dipole_pos" else w_neg
    return losses.awr_weights(adv, beta, clip=clip if method == "awr_clip" else None)


def weight_explosion(
    actions: Tensor,
    adv: Tensor,
    betas: list[float],
    k: float,
    scheduler: SchedulerMixin,
    clip: float = 20.0,
    batch_size: int = 256,
    num_batches: int = 8,
    seed: int = 0,
) -> list[dict[str, float | str]]:
    """One row per (beta, method): ESS fraction, max/mean weight, median and max gradient norm."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = EpsMLP()
    n_train = scheduler.config.num_train_timesteps
    batches = []
    for _ in range(num_batches):
        idx = torch.randint(actions.shape[0], (batch_size,), generator=gen)
        noise = torch.randn(batch_size, actions.shape[1], generator=gen)
        t = torch.randint(n_train, (batch_size,), generator=gen)
        batches.append((idx, scheduler.add_noise(actions[idx], noise, t), noise, t))
    rows: list[dict[str, float | str]] = []
    adv = adv.double()  # exact weights (exp(100 A) fits float64): ESS is not distorted by overflow
    for beta in betas:
        for method in METHODS:
            w_all = _weights(method, adv, beta, k, clip)
            stats = losses.weight_stats(w_all)
            norms = []
            for idx, x_t, noise, t in batches:
                err = ((net(x_t, t) - noise) ** 2).sum(-1)  # float32, as in training
                loss, _ = losses.weighted_loss(err, w_all[idx])
                net.zero_grad(set_to_none=True)
                loss.backward()
                sq = sum(float(p.grad.double().pow(2).sum()) for p in net.parameters() if p.grad is not None)
                norms.append(math.sqrt(sq) if math.isfinite(sq) else math.inf)
            finite = sorted(n if math.isfinite(n) else math.inf for n in norms)
            rows.append(
                {
                    "beta": beta,
                    "method": method,
                    "ess_frac": float(stats["ess_frac"]),
                    "max_over_mean": float(stats["max_over_mean"]),
                    "w_max": float(stats["max"]),
                    "grad_norm_median": finite[len(finite) // 2],
                    "grad_norm_max": finite[-1],
                }
            )
    return rows
