"""Trajectory normalisation with the statistics stored in a shard manifest (`traj_stats`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_dipole.data.shard_io import read_manifest


@dataclass(frozen=True)
class TrajectoryStats:
    """Standardises x, y of (..., 3) trajectories; heading is left in radians."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any] | str | Path) -> TrajectoryStats:
        if not isinstance(manifest, Mapping):
            manifest = read_manifest(manifest)
        stats = manifest.get("traj_stats")
        if not stats or len(stats.get("mean", ())) != 3 or len(stats.get("std", ())) != 3:
            raise ValueError(
                "manifest field traj_stats must hold 3-element mean and std "
                "(recompute with python -m vla_dipole.data.stats OUT)"
            )
        return cls(tuple(stats["mean"]), tuple(stats["std"]))

    def _params(self, like: np.ndarray | torch.Tensor):
        mean = np.array([self.mean[0], self.mean[1], 0.0], np.float32)
        std = np.array([self.std[0], self.std[1], 1.0], np.float32)
        if isinstance(like, torch.Tensor):
            return torch.from_numpy(mean).to(like), torch.from_numpy(std).to(like)
        return mean, std

    def normalize(self, traj):
        mean, std = self._params(traj)
        return (traj - mean) / std

    def denormalize(self, traj):
        mean, std = self._params(traj)
        return traj * std + mean
