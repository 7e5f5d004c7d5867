"""Streaming loader: exactly-once epochs over ranks x workers, corrupt data skipped and counted,
resampled mode, normalisation and the optional backbone transform."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from data_prep.shard_format import (
    encode_sample,
    read_manifest,
    sha256_file,
    shard_name,
    shard_writer,
    write_manifest,
)
from vla_dipole.data import CorruptShardsError, TrajectoryStats, make_loader, openvla_pixel_values
from vla_dipole.data.transforms import DINO_MEAN, DINO_STD

from .conftest import make_sample, write_build


def _tokens(loader) -> list[str]:
    return [t for batch in loader for t in batch["token"]]


def _all_tokens(root) -> set[str]:
    return set(_tokens(make_loader(root, batch_size=16, shuffle_buffer=0, shardshuffle=False)))


def test_two_ranks_two_workers_see_every_sample_once_per_epoch(tmp_path):
    root = tmp_path / "shards"
    write_build(root, num_shards=8, per_shard=5)
    everything = _all_tokens(root)
    assert len(everything) == 40
    orders = []
    for epoch in (0, 1):
        seen: Counter = Counter()
        per_rank = []
        for rank in (0, 1):
            loader = make_loader(
                root, batch_size=4, num_workers=2, rank=rank, world_size=2, shuffle_buffer=8, seed=3
            )
            loader.set_epoch(epoch)
            tokens = _tokens(loader)
            per_rank.append(tokens)
            seen.update(tokens)
            assert loader.last_report.samples == len(tokens) and loader.last_report.skipped == 0
        assert set(seen) == everything and set(seen.values()) == {1}
        assert set(per_rank[0]).isdisjoint(per_rank[1])
        orders.append(per_rank[0])
    assert orders[0] != orders[1]  # shards and samples reshuffled per epoch


def test_batches_are_collated_tensors(shard_dir):
    batch = next(iter(make_loader(shard_dir, batch_size=4, normalize=True)))
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (4, 2, 24, 32, 3)
    assert batch["candidates"].shape == (4, 6, 8, 3) and batch["candidates"].dtype == torch.float32
    assert batch["sources"].dtype == torch.int64 and batch["candidate_scores"].shape == (4, 6, 12)
    stats = TrajectoryStats.from_manifest(shard_dir)
    expected = (batch["human"][..., :2] - torch.tensor(stats.mean[:2])) / torch.tensor(stats.std[:2])
    torch.testing.assert_close(batch["human_norm"][..., :2], expected)
    torch.testing.assert_close(batch["human_norm"][..., 2], batch["human"][..., 2])
    torch.testing.assert_close(
        stats.denormalize(batch["candidates_norm"]), batch["candidates"], atol=1e-4, rtol=1e-5
    )


def test_truncated_shard_is_skipped_counted_and_named(shard_dir):
    bad = shard_dir / shard_name("unit", 2)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning, match="unit-000002.tar"):
        loader = make_loader(shard_dir, batch_size=8, num_workers=2, max_corrupt_fraction=0.5)
        tokens = _tokens(loader)
    report = loader.last_report
    assert len(tokens) == report.samples < 40
    assert report.skipped == 40 - report.samples and report.expected == 40
    assert list(report.bad_shards) == [str(bad)]
    strict = make_loader(shard_dir, batch_size=8, max_corrupt_fraction=0.01)
    with pytest.raises(CorruptShardsError, match="unit-000002.tar"), pytest.warns(UserWarning):
        _tokens(strict)


def test_sample_with_missing_member_is_skipped(tmp_path):
    root = tmp_path / "shards"
    write_build(root, num_shards=2, per_shard=4)
    manifest = read_manifest(root)
    path = root / shard_name("unit", 1)
    rng = np.random.default_rng(9)
    with open(path, "wb") as fh, shard_writer(fh) as writer:
        for i in range(4):
            raw = encode_sample(make_sample(f"feedbeef000000{i:02d}", rng))
            if i == 2:
                del raw["arrays.npy"]
            writer.write(raw)
    manifest["shards"][1]["sha256"] = sha256_file(path)
    write_manifest(root, manifest)
    with pytest.warns(UserWarning, match="missing member 'arrays.npy'"):
        loader = make_loader(root, batch_size=3, max_corrupt_fraction=0.2)
        tokens = _tokens(loader)
    assert len(tokens) == 7 and "feedbeef00000002" not in tokens
    assert loader.last_report.skipped == 1 and list(loader.last_report.bad_shards) == [str(path)]


def test_resampled_mode_streams_nominal_epochs(shard_dir):
    loader = make_loader(
        shard_dir, batch_size=5, num_workers=2, resampled=True, epoch_samples=30, rank=1, world_size=2
    )
    counts = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        tokens = _tokens(loader)
        counts.append(len(tokens))
        assert set(tokens) <= _all_tokens(shard_dir)
    assert counts == [30, 30]
    endless = iter(make_loader(shard_dir, batch_size=10, resampled=True, epoch_samples=0))
    assert sum(len(next(endless)["token"]) for _ in range(9)) == 90  # more than the 40 samples there are


def test_missing_shard_file_is_reported(shard_dir):
    shutil.move(shard_dir / shard_name("unit", 0), shard_dir / "moved.tar")
    loader = make_loader(shard_dir, batch_size=8, max_corrupt_fraction=1.0)
    with pytest.warns(UserWarning, match="unit-000000.tar"):
        assert len(_tokens(loader)) == 30
    assert loader.last_report.skipped == 10


def test_openvla_transform_normalises_per_backbone():
    images = np.full((2, 40, 60, 3), 128, np.uint8)
    pixels = openvla_pixel_values(images)
    assert pixels.shape == (2, 6, 224, 224)
    value = 128 / 255
    torch.testing.assert_close(
        pixels[0, 0, 100, 100], torch.tensor((value - DINO_MEAN[0]) / DINO_STD[0]), atol=2e-3, rtol=0
    )
    torch.testing.assert_close(pixels[1, 4, 5, 7], torch.tensor((value - 0.5) / 0.5), atol=2e-3, rtol=0)


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
