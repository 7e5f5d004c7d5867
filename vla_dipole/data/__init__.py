"""Streaming loader for the scored trajectory shards (schema: docs/shards.md)."""

from data_prep.shard_format import SCORE_NAMES, SOURCES
from vla_dipole.data.collate import collate
from vla_dipole.data.dataset import ShardDataset, dist_info
from vla_dipole.data.health import CorruptShardsError, EpochReport
from vla_dipole.data.loader import ShardLoader, make_loader
from vla_dipole.data.normalize import TrajectoryStats
from vla_dipole.data.transforms import openvla_pixel_values

__all__ = [
    "SCORE_NAMES",
    "SOURCES",
    "CorruptShardsError",
    "EpochReport",
    "ShardDataset",
    "ShardLoader",
    "TrajectoryStats",
    "collate",
    "dist_info",
    "make_loader",
    "openvla_pixel_values",
]
