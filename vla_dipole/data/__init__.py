"""Batch assembly and trajectory normalisation for the scored shards (schema: docs/shards.md).

Training reads shards through `vla_dipole.training.indexed_data.IndexedShards` (random access,
sha256-checked); this package holds what every consumer shares: `collate` and `TrajectoryStats` (the
backbone's image transform is the model's own, `vla_dipole.model.image_processing`).
"""

from data_prep.shard_format import SCORE_NAMES, SOURCES
from vla_dipole.data.collate import collate
from vla_dipole.data.normalize import TrajectoryStats

__all__ = ["SCORE_NAMES", "SOURCES", "TrajectoryStats", "collate"]
