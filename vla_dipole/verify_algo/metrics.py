"""Sample-based distances and checks used by the bandit proof."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: Kernel bandwidths (action units; the mixture's modes have std 0.15, its spread is ~1).
BANDWIDTHS = (0.1, 0.2, 0.4)


def mmd(x: Tensor, y: Tensor, bandwidths: Sequence[float] = BANDWIDTHS) -> float:
    """Unbiased MMD between sample sets ``x`` [n, d] and ``y`` [m, d], sum of Gaussian kernels.

    Returned as sqrt(max(MMD², 0)) so it is in kernel-feature units and comparable across runs.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"mmd: expected [n, d] and [m, d] samples, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x, y = x.double(), y.double()
    n, m = x.shape[0], y.shape[0]
    dxx, dyy, dxy = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, torch.cdist(x, y) ** 2
    total = 0.0
    for h in bandwidths:
        kxx, kyy, kxy = (torch.exp(-d / (2 * h * h)) for d in (dxx, dyy, dxy))
        total += (
            (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
            + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return float(torch.clamp(torch.as_tensor(total), min=0.0).sqrt())


def is_monotone(values: Sequence[float], slack: float = 0.0) -> bool:
    """True when ``values`` never decrease by more than ``slack`` from one entry to the next."""
    return all(b >= a - slack for a, b in zip(values, values[1:], strict=False))
