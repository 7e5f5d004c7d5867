"""Schedules measured in samples, not steps.

A run is defined by how many samples it sees and with which learning rate. The per-device batch, the
world size and the gradient accumulation are then derived so that 1, 2 or 64 devices consume the same
sample stream, in the same optimizer-step groups, with the same learning-rate curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_dipole.training.config import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step of `global_batch` samples is split over devices and micro-batches."""

    global_batch: int
    micro_batch: int
    world_size: int
    grad_accum: int
    total_samples: int

    @property
    def total_steps(self) -> int:
        return math.ceil(self.total_samples / self.global_batch)

    def positions(self, step: int, micro: int, rank: int) -> np.ndarray:
        """Stream positions of the samples that `rank` uses in micro-batch `micro` of optimizer step `step`.

        Step `step` always covers positions [step * G, (step + 1) * G) whatever the world size.
        """
        start = step * self.global_batch + (micro * self.world_size + rank) * self.micro_batch
        return np.arange(start, start + self.micro_batch, dtype=np.int64)


def plan_batches(global_batch: int, micro_batch: int, world_size: int, total_samples: int) -> BatchPlan:
    """Derive gradient accumulation; error if the global batch does not split evenly."""
    per_step = micro_batch * world_size
    if global_batch % per_step != 0:
        raise ConfigError(
            f"config field 'schedule.global_batch'={global_batch} is not divisible by "
            f"schedule.micro_batch ({micro_batch}) x world size ({world_size}) = {per_step}; "
            f"choose a global batch that is a multiple of {per_step} or another micro batch"
        )
    return BatchPlan(global_batch, micro_batch, world_size, global_batch // per_step, total_samples)


def lr_at(
    samples: int, base_lr: float, warmup_samples: int, total_samples: int, min_lr_ratio: float
) -> float:
    """Linear warmup then cosine decay to `min_lr_ratio * base_lr`, as a function of samples seen."""
    min_lr = base_lr * min_lr_ratio
    if warmup_samples > 0 and samples < warmup_samples:
        return base_lr * samples / warmup_samples
    decay = max(total_samples - warmup_samples, 1)
    progress = min(max(samples - warmup_samples, 0) / decay, 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class SampleOrder:
    """Deterministic infinite stream of dataset indices: a fresh seeded permutation every epoch.

    Stream position -> dataset index is a pure function of (seed, position), so resuming only needs the
    number of samples seen and every rank can compute its own slice without communication.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True) -> None:
        if num_samples <= 0:
            raise ValueError("SampleOrder needs at least one sample (the dataset is empty)")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self._cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(self.num_samples) if self.shuffle else np.arange(self.num_samples)
            self._cache[epoch] = perm
        return self._cache[epoch]

    def indices(self, positions: np.ndarray) -> np.ndarray:
        epochs, offsets = np.divmod(positions, self.num_samples)
        return np.array(
            [self._perm(int(e))[int(o)] for e, o in zip(epochs, offsets, strict=True)], dtype=np.int64
        )


class StepBatches:
    """Batch sampler: the dataset indices of this rank's micro-batches, from `start_step` to the end.

    Used as a DataLoader `batch_sampler`, so workers prefetch exactly the samples the schedule assigns,
    and a resumed run starts at its data position without replaying the stream.
    """

    def __init__(self, plan: BatchPlan, order: SampleOrder, rank: int, start_step: int = 0) -> None:
        self.plan, self.order, self.rank, self.start_step = plan, order, rank, start_step

    def __iter__(self):
        for step in range(self.start_step, self.plan.total_steps):
            for micro in range(self.plan.grad_accum):
                yield self.order.indices(self.plan.positions(step, micro, self.rank)).tolist()

    def __len__(self) -> int:
        return max(self.plan.total_steps - self.start_step, 0) * self.plan.grad_accum
