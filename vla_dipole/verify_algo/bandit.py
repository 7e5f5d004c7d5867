"""The 2-D continuous bandit: a known behaviour distribution mu, a known reward G and the exact target.

Everything here is analytic, so the trained policies can be checked against ground truth:

    pi*_omega(a) ∝ mu(a) · sigmoid(beta·A(a) + k) · exp(omega·beta·A(a)),   A = G - baseline

(Theorem 1 of DIPOLE with the App. D.2 shift k; the baseline is a constant, so it only moves k and the
normaliser). omega = -1 gives pi- ∝ mu·(1 - sigmoid(.)), omega = 0 gives pi+ ∝ mu·sigmoid(.).
Expectations under pi* are self-normalised importance sums over many samples of mu, and target
*samples* come from importance resampling those mu samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Bandit:
    """mu = equal-weight isotropic Gaussian mixture; G = a Gaussian bump around ``goal``, in [-1, 1]."""

    means: tuple[tuple[float, float], ...] = field(
        default_factory=lambda: tuple(
            (
                round(0.9 * math.cos(2 * math.pi * i / 5 + 0.3), 4),
                round(0.9 * math.sin(2 * math.pi * i / 5 + 0.3), 4),
            )
            for i in range(5)
        )
    )
    std: float = 0.15
    goal: tuple[float, float] = (0.9, 0.6)
    reward_width: float = 0.7
    beta: float = 3.0
    k: float = 0.0

    def sample_mu(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` actions ``[n, 2]`` from the behaviour mixture."""
        means = torch.tensor(self.means, dtype=torch.float32)
        idx = torch.randint(len(self.means), (n,), generator=generator)
        return means[idx] + self.std * torch.randn(n, 2, generator=generator)

    def reward(self, a: Tensor) -> Tensor:
        """G(a) = 2·exp(-|a - goal|² / (2 width²)) - 1: one high-reward region, low elsewhere."""
        d2 = ((a - torch.tensor(self.goal, dtype=a.dtype, device=a.device)) ** 2).sum(-1)
        return 2.0 * torch.exp(-d2 / (2 * self.reward_width**2)) - 1.0

    def log_target_weight(self, adv: Tensor, omega: float) -> Tensor:
        """log[ sigmoid(beta A + k) · exp(omega beta A) ] (omega = -1: log(1 - sigmoid), pi-)."""
        z = self.beta * adv + self.k
        if omega == -1.0:
            return torch.nn.functional.logsigmoid(-z)
        return torch.nn.functional.logsigmoid(z) + omega * self.beta * adv


@dataclass
class TargetOracle:
    """Exact expectations and samples of pi*_omega from a large pool of mu samples."""

    bandit: Bandit
    pool: Tensor  # [M, 2] samples of mu
    baseline: float

    @classmethod
    def build(cls, bandit: Bandit, pool_size: int, generator: torch.Generator | None = None) -> TargetOracle:
        pool = bandit.sample_mu(pool_size, generator)
        return cls(bandit, pool, float(bandit.reward(pool).mean()))

    def advantage(self, a: Tensor) -> Tensor:
        return self.bandit.reward(a) - self.baseline

    def weights(self, omega: float) -> Tensor:
        """Normalised importance weights of the pool under pi*_omega (float64 for large omega·beta)."""
        logw = self.bandit.log_target_weight(self.advantage(self.pool).double(), omega)
        return torch.softmax(logw, dim=0)

    def mean_reward(self, omega: float) -> float:
        return float((self.weights(omega) * self.bandit.reward(self.pool).double()).sum())

    def ess(self, omega: float) -> float:
        """Kish ESS of the importance weights: how many mu samples the target estimate really rests on."""
        return float(1.0 / (self.weights(omega) ** 2).sum())

    def sample(self, omega: float, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` target samples by multinomial importance resampling of the pool."""
        idx = torch.multinomial(self.weights(omega), n, replacement=True, generator=generator)
        return self.pool[idx]
