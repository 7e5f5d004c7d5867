"""Sample-based distances and checks used by the bandit proof."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: Kernel bandwidths in action units, from about a mode's size (std 0.15) to the distance between modes
#: (~1): the distance measures where the policy puts its mass. Finer kernels mostly measure how sharp
#: the toy nets' modes are, which a CPU-sized training budget does not settle (see ``Tolerances``).
BANDWIDTHS = (0.2, 0.4, 0.8)


def _kernel_mean(x: Tensor, y: Tensor, bandwidths: Sequence[float], same: bool) -> float:
    """Mean of the summed Gaussian kernels over pairs (off-diagonal pairs when ``x is y``)."""
    d2 = torch.cdist(x, y) ** 2
    total = sum(torch.exp(-d2 / (2 * h * h)).sum() for h in bandwidths)
    if same:
        n = x.shape[0]
        return float((total - n * len(bandwidths)) / (n * (n - 1)))
    return float(total / (x.shape[0] * y.shape[0]))


def mmd_matrix(
    xs: Sequence[Tensor], ys: Sequence[Tensor], bandwidths: Sequence[float] = BANDWIDTHS
) -> Tensor:
    """Unbiased MMD between every ``xs[i]`` and ``ys[j]`` (each [n, d]), as a [len(xs), len(ys)] tensor.

    Sums of Gaussian kernels over ``bandwidths``; returned as sqrt(max(MMD², 0)) so it is in
    kernel-feature units. Self terms are computed once per set, so a sweep costs one cross term a pair.
    """
    for name, group in (("xs", xs), ("ys", ys)):
        for s in group:
            if s.dim() != 2 or s.shape[1] != xs[0].shape[1] or s.shape[0] < 2:
                raise ValueError(
                    f"mmd: {name} must be [n >= 2, d={xs[0].shape[1]}] samples, got {tuple(s.shape)}"
                )
    self_x = [_kernel_mean(x, x, bandwidths, True) for x in xs]
    self_y = [_kernel_mean(y, y, bandwidths, True) for y in ys]
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            out[i, j] = self_x[i] + self_y[j] - 2 * _kernel_mean(x, y, bandwidths, False)
    return out.clamp(min=0.0).sqrt()


def mmd(x: Tensor, y: Tensor, bandwidths: Sequence[float] = BANDWIDTHS) -> float:
    """Unbiased MMD between two sample sets ``x`` [n, d] and ``y`` [m, d] (see :func:`mmd_matrix`)."""
    return float(mmd_matrix([x], [y], bandwidths)[0, 0])


def is_monotone(values: Sequence[float], slack: float = 0.0) -> bool:
    """True when ``values`` never decrease by more than ``slack`` from one entry to the next."""
    return all(b >= a - slack for a, b in zip(values, values[1:], strict=False))
