"""DIPOLE training losses, shared by the driving model's training loop and the bandit proof.

DIPOLE (arXiv 2601.00898; the README's summary) trains two noise predictors on the *same*
samples of the reference policy mu with complementary, bounded, stop-gradient weights::

    w+ = sigmoid(beta * A + k),   w- = 1 - w+
    L  = mean(w+ * ||eps - eps+||^2 + w- * ||eps - eps-||^2)

so that eps+ fits pi+ ∝ mu·sigmoid(beta A + k) and eps- fits pi- ∝ mu·(1 - sigmoid(beta A + k)).
The exponentially weighted baseline (AWR / reward-weighted regression, ``w = exp(beta A)``) is kept
here too, because its exploding weights are what DIPOLE is meant to fix.

All functions are pure torch: no module state, no ``.item()`` calls in the loss path (statistics are
returned as detached tensors so logging does not force a device sync until the caller wants it).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "ADVANTAGE_MODES",
    "advantages",
    "awr_weights",
    "dichotomous_loss",
    "dipole_weights",
    "effective_sample_size",
    "weight_stats",
    "weighted_loss",
]

#: Supported ``mode`` values of :func:`advantages`.
ADVANTAGE_MODES = ("group_std", "group_mean", "raw_minus_baseline", "raw")

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _check_floating(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")


def advantages(
    rewards: Tensor,
    mode: str = "group_std",
    eps: float = 1e-6,
    baseline: Tensor | float | None = None,
    std_floor: float = 0.0,
) -> Tensor:
    """Advantages ``[B, K]`` from rewards ``[B, K]`` (B scenes, K sampled candidates per scene).

    The group of a reward is the K candidates of one scene, as in group-relative RL on NAVSIM:

    - ``"group_std"``: ``(R - mean_K R) / (max(std_K R, std_floor) + eps)`` (population std, so K=1
      gives 0, not NaN). Scale-free, so one ``beta`` works across scenes with very different reward
      spreads; ``std_floor`` stops near-ties (candidates 0.001 PDMS apart) from being blown up to +-1.
    - ``"group_mean"``: ``R - mean_K R`` (keeps the reward's units).
    - ``"raw_minus_baseline"``: ``R - baseline``; ``baseline`` is a scalar, ``[B]`` (per scene, e.g. a
      value estimate) or ``[B, K]``. Without ``baseline`` the group mean is used.
    - ``"raw"``: ``R`` unchanged (the reward already is an advantage, e.g. a critic's ``Q - V``).

    The result carries no gradient: advantages are targets, never optimised through.
    """
    _check_floating("rewards", rewards)
    if rewards.dim() != 2:
        raise ValueError(f"rewards: expected shape [B, K] (scenes x candidates), got {tuple(rewards.shape)}")
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"mode: expected one of {ADVANTAGE_MODES}, got {mode!r}")
    r = rewards.detach()
    if mode == "raw":
        return r.clone()
    if mode == "raw_minus_baseline" and baseline is not None:
        b = torch.as_tensor(baseline, dtype=r.dtype, device=r.device)
        if b.dim() == 1:
            if b.shape[0] != r.shape[0]:
                raise ValueError(f"baseline: expected [B]={r.shape[0]} values, got {tuple(b.shape)}")
            b = b[:, None]
        elif b.dim() == 2 and b.shape != r.shape:
            raise ValueError(f"baseline: expected shape {tuple(r.shape)}, got {tuple(b.shape)}")
        elif b.dim() > 2:
            raise ValueError(f"baseline: expected a scalar, [B] or [B, K], got {tuple(b.shape)}")
        return r - b.detach()
    centred = r - r.mean(dim=1, keepdim=True)
    if mode == "group_std":
        return centred / (r.std(dim=1, unbiased=False, keepdim=True).clamp_min(std_floor) + eps)
    return centred


def dipole_weights(adv: Tensor, beta: float, k: float = 0.0) -> tuple[Tensor, Tensor]:
    """Complementary DIPOLE weights ``(w_pos, w_neg)`` = ``(sigmoid(beta*A + k), 1 - sigmoid(beta*A + k))``.

    Bounded in [0, 1] for any ``beta`` (unlike ``exp(beta*A)``), sum to one per sample (up to float
    rounding), and are stop-gradient constants. ``w_neg`` is computed as ``sigmoid(-(beta*A + k))`` so it
    keeps its relative precision where ``w_pos`` saturates at 1. ``k`` shifts the sigmoid's active region
    onto the advantage distribution (paper App. D.2).
    """
    _check_floating("adv", adv)
    if beta < 0:
        raise ValueError(f"beta: expected >= 0 (a temperature), got {beta}")
    z = beta * adv.detach() + k
    return torch.sigmoid(z), torch.sigmoid(-z)


def awr_weights(adv: Tensor, beta: float, clip: float | None = 20.0) -> Tensor:
    """Exponential (AWR / reward-weighted regression) weights ``min(exp(beta*A), clip)``, stop-gradient.

    This is the baseline of paper Eq. 4: the KL-regularised optimum pi ∝ mu·exp(beta G) as a weighted
    regression. With ``clip=None`` the raw weights are returned (they overflow to ``inf`` for large
    ``beta*A``, which is exactly the failure the bandit proof reports).
    """
    _check_floating("adv", adv)
    if clip is not None and clip <= 0:
        raise ValueError(f"clip: expected a positive maximum weight or None, got {clip}")
    w = torch.exp(beta * adv.detach())
    return w if clip is None else w.clamp(max=clip)


def _expand_mask(mask: Tensor, shape: torch.Size) -> Tensor:
    """Bool mask (True = valid) aligned on the leading dims of ``shape`` (e.g. ``[B]`` for ``[B, K]``)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(
            f"mask: expected a bool tensor (True = valid), got {getattr(mask, 'dtype', type(mask))}"
        )
    if mask.dim() > len(shape):
        raise ValueError(f"mask: shape {tuple(mask.shape)} has more dims than the loss terms {tuple(shape)}")
    padded = mask.reshape(*mask.shape, *([1] * (len(shape) - mask.dim())))
    try:
        return padded.expand(shape)
    except RuntimeError as err:
        raise ValueError(
            f"mask: shape {tuple(mask.shape)} does not match the leading dims of the loss terms {tuple(shape)}"
        ) from err


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is true (0, still with a graph, if none is)."""
    if mask is None:
        return x.mean()
    m = _expand_mask(mask, x.shape).to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def _weighted_terms(err_name: str, err: Tensor, w_name: str, w: Tensor) -> Tensor:
    """``w.detach() * err`` after checking that the weights broadcast onto the errors."""
    _check_floating(err_name, err)
    _check_floating(w_name, w)
    try:
        torch.broadcast_shapes(err.shape, w.shape)
    except RuntimeError as e:
        raise ValueError(
            f"{w_name}: shape {tuple(w.shape)} does not broadcast with {err_name} {tuple(err.shape)} "
            "(expected per-sample weights matching the per-sample errors)"
        ) from e
    return w.detach() * err


def weighted_loss(err: Tensor, w: Tensor, mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Single-head weighted regression ``mean(w * err)`` (BC with ``w=1``, AWR with :func:`awr_weights`).

    ``err`` is the per-sample squared denoising error (e.g. ``[B]`` or ``[B, K]``), ``w`` broadcastable
    to it and treated as a constant; ``mask`` (bool, True = valid) selects the samples averaged over.
    Returns ``(loss, stats)`` with detached statistics for logging.
    """
    terms = _weighted_terms("err", err, "w", w)
    loss = _masked_mean(terms, mask)
    stats = {"loss": loss.detach(), "err": _masked_mean(err.detach(), mask)}
    stats.update(weight_stats(torch.broadcast_to(w.detach(), terms.shape), mask=mask, prefix="w_"))
    return loss, stats


def dichotomous_loss(
    err_pos: Tensor,
    err_neg: Tensor,
    w_pos: Tensor,
    w_neg: Tensor,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DIPOLE's two-head loss ``mean(w+ * err+ + w- * err-)`` (paper Eq. 9, both heads in one sum).

    ``err_pos`` / ``err_neg`` are the per-sample squared errors of the positive / negative heads on the
    same noisy inputs; the weights are constants (detached here as well, so a caller cannot leak a
    gradient into the reward model). Because the heads share no parameters, the sum's gradient for each
    head equals the gradient of its own weighted regression. Returns ``(loss, stats)``; ``stats`` holds
    detached tensors: the two weighted terms, the unweighted errors and :func:`weight_stats` of ``w+``.
    """
    if err_pos.shape != err_neg.shape:
        raise ValueError(
            f"err_neg: expected the same shape as err_pos {tuple(err_pos.shape)}, got {tuple(err_neg.shape)}"
        )
    pos = _weighted_terms("err_pos", err_pos, "w_pos", w_pos)
    neg = _weighted_terms("err_neg", err_neg, "w_neg", w_neg)
    loss_pos = _masked_mean(pos, mask)
    loss_neg = _masked_mean(neg, mask)
    loss = loss_pos + loss_neg
    stats = {
        "loss": loss.detach(),
        "loss_pos": loss_pos.detach(),
        "loss_neg": loss_neg.detach(),
        "err_pos": _masked_mean(err_pos.detach(), mask),
        "err_neg": _masked_mean(err_neg.detach(), mask),
    }
    stats.update(weight_stats(torch.broadcast_to(w_pos.detach(), pos.shape), mask=mask, prefix="w_pos_"))
    return loss, stats


def effective_sample_size(w: Tensor) -> Tensor:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` of non-negative weights (a 0-d tensor).

    Equals N for uniform weights and 1 when one sample carries all the weight. Computed in float64 after
    dividing by the largest weight, so huge finite weights do not overflow; infinite weights count as
    equal and dominate (the limit of the formula).
    """
    _check_floating("w", w)
    w = w.detach().reshape(-1).to(torch.float64)
    if w.numel() == 0:
        return torch.zeros((), dtype=torch.float64, device=w.device)
    if torch.isnan(w).any() or (w < 0).any():
        raise ValueError("w: expected non-negative, non-NaN weights")
    if torch.isinf(w).any():
        w = torch.isinf(w).to(torch.float64)
    top = w.max()
    if top <= 0:
        return torch.zeros((), dtype=torch.float64, device=w.device)
    w = w / top
    return w.sum() ** 2 / (w * w).sum()


def weight_stats(w: Tensor, mask: Tensor | None = None, prefix: str = "") -> dict[str, Tensor]:
    """Summary of a weight tensor for logging (tensorboard scalars + histogram), all detached.

    Keys (after ``prefix``): ``mean, std, min, max, q05, q25, q50, q75, q95, ess`` (Kish ESS),
    ``ess_frac`` (ESS / N: 1 = uniform, 1/N = one sample dominates), ``max_over_mean`` and ``values``
    (the flat selected weights, ready for ``SummaryWriter.add_histogram``).
    """
    _check_floating("w", w)
    v = w.detach()
    if mask is not None:
        v = v[_expand_mask(mask, v.shape)]
    v = v.reshape(-1)
    n = v.numel()
    if n == 0:
        zero = torch.zeros((), dtype=w.dtype, device=w.device)
        out = dict.fromkeys(
            (
                "mean",
                "std",
                "min",
                "max",
                *[f"q{int(q * 100):02d}" for q in _QUANTILES],
                "ess",
                "ess_frac",
                "max_over_mean",
            ),
            zero,
        )
        out["values"] = v
        return {prefix + key: val for key, val in out.items()}
    vf = v if v.dtype in (torch.float32, torch.float64) else v.float()  # float64 keeps huge weights finite
    qs = torch.quantile(vf, torch.tensor(_QUANTILES, dtype=vf.dtype, device=vf.device))
    ess = effective_sample_size(v).to(vf.dtype)
    mean = vf.mean()
    out = {
        "mean": mean,
        "std": vf.std(unbiased=False),
        "min": vf.min(),
        "max": vf.max(),
        **{f"q{int(q * 100):02d}": qs[i] for i, q in enumerate(_QUANTILES)},
        "ess": ess,
        "ess_frac": ess / n,
        # inf / inf would be NaN: overflowing weights are reported as an infinite ratio instead
        "max_over_mean": torch.where(
            torch.isinf(vf.max()), vf.max(), vf.max() / mean.clamp(min=torch.finfo(vf.dtype).tiny)
        ),
        "values": v,
    }
    return {prefix + key: val for key, val in out.items()}
