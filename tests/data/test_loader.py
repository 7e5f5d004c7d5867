"""The training data path (IndexedShards): collated batches in shard order, damaged shards refused by
name or skipped and counted, undecodable samples named; normalisation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vla_dipole.data.normalize import TrajectoryStats
from vla_dipole.data.shard_format import SampleFormatError, encode_sample
from vla_dipole.data.shard_io import ShardWriter, read_manifest, sha256_file, shard_name, write_manifest
from vla_dipole.training.config import ConfigError
from vla_dipole.training.indexed_data import DamagedShardError, IndexedShards, _index_tar, read_batch

from .conftest import make_sample, write_build


def test_batches_are_collated_tensors_in_shard_order(shard_dir):
    batch = read_batch(shard_dir, 4)
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (4, 2, 24, 32, 3)
    assert batch["candidates"].shape == (4, 6, 8, 3) and batch["candidates"].dtype == torch.float32
    assert batch["sources"].dtype == torch.int64 and batch["candidate_scores"].shape == (4, 6, 12)
    assert batch["token"] == [t for t, _ in _index_tar(str(shard_dir / shard_name("unit", 0)))][:4]
    stats = TrajectoryStats.from_manifest(shard_dir)
    norm = stats.normalize(batch["human"])
    expected = (batch["human"][..., :2] - torch.tensor(stats.mean[:2])) / torch.tensor(stats.std[:2])
    torch.testing.assert_close(norm[..., :2], expected)
    torch.testing.assert_close(norm[..., 2], batch["human"][..., 2])
    torch.testing.assert_close(stats.denormalize(norm), batch["human"], atol=1e-4, rtol=1e-5)
    assert len(IndexedShards([shard_dir])) == 40


def test_truncated_shard_is_refused_by_name_or_skipped_and_counted(shard_dir):
    bad = shard_dir / shard_name("unit", 2)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DamagedShardError, match=f"shard {bad} is damaged: sha256"):
        IndexedShards([shard_dir])
    skipping = IndexedShards([shard_dir], on_damaged="skip")
    assert len(skipping) == 30 and skipping.num_skipped == 10 and list(skipping.skipped) == [str(bad)]
    assert skipping.report()["skipped_samples"] == 10
    assert str(bad) not in skipping.paths


def test_sample_with_missing_member_is_named_when_read(tmp_path):
    """A shard that matches its manifest but holds a sample without arrays.npy (another writer): the
    read of that sample raises, naming shard, key and member."""
    root = tmp_path / "shards"
    write_build(root, num_shards=2, per_shard=4)
    manifest = read_manifest(root)
    path = root / shard_name("unit", 1)
    rng = np.random.default_rng(9)
    with open(path, "wb") as fh, ShardWriter(fh) as writer:
        for i in range(4):
            raw = encode_sample(make_sample(f"feedbeef000000{i:02d}", rng))
            if i == 2:
                del raw["arrays.npy"]
            writer.write(raw)
    manifest["shards"][1]["sha256"] = sha256_file(path)
    write_manifest(root, manifest)
    data = IndexedShards([root])
    assert [data[i]["token"] for i in range(6)]
    with pytest.raises(
        SampleFormatError, match=f"shard {path} sample feedbeef00000002: missing member 'arrays.npy'"
    ):
        data[6]


def test_missing_shard_file_is_named(shard_dir):
    shutil.move(shard_dir / shard_name("unit", 0), shard_dir / "moved.tar")
    with pytest.raises(ConfigError, match="unit-000000.tar listed in .* is missing"):
        IndexedShards([shard_dir])


def test_stats_command_recomputes_manifest_statistics(shard_dir):
    from vla_dipole.data.stats import main as stats_main

    manifest = read_manifest(shard_dir)
    expected = manifest["traj_stats"]
    manifest["traj_stats"] = {"mean": [0, 0, 0], "std": [1, 1, 1], "count": 0}
    write_manifest(shard_dir, manifest)
    stats_main([str(shard_dir)])
    got = read_manifest(shard_dir)["traj_stats"]
    assert got["count"] == expected["count"] == 40 * 7 * 8
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-9)
    np.testing.assert_allclose(got["std"], expected["std"], rtol=1e-9)
    assert got["std"][0] > 1.0  # x spreads over tens of metres
