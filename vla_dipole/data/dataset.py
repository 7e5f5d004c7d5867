"""Streaming shard dataset: a webdataset pipeline split by rank and by DataLoader worker.

Epoch mode: the shard list is shuffled with (seed, epoch) identically on every rank, rank r takes
shards[r::world_size], and DataLoader workers split those again (wds.split_by_worker), so each
sample is read exactly once per epoch over all ranks and workers. Resampled mode draws shards
with replacement forever; `epoch_samples` (per rank) cuts that stream into nominal epochs.
Each worker ends its stream with a health record that `ShardLoader` merges into an epoch report.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from data_prep.shard_format import decode_sample, read_manifest, shard_paths
from vla_dipole.data.collate import collate
from vla_dipole.data.health import ShardHealth
from vla_dipole.data.normalize import TrajectoryStats
from vla_dipole.data.transforms import openvla_pixel_values

HEALTH_KEY = "__health__"


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Explicit values win; else torch.distributed when initialised; else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank() if rank is None else rank
            world_size = torch.distributed.get_world_size() if world_size is None else world_size
    rank, world_size = (0 if rank is None else rank), (1 if world_size is None else world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..world_size-1 (world_size={world_size})")
    return rank, world_size


def _split_by_rank(rank: int, world_size: int) -> Callable:
    def stage(src):
        yield from islice(src, rank, None, world_size)

    return stage


class ShardDataset(IterableDataset):
    """Yields collated batches (or single decoded samples when batch_size is None) of one build.

    Args:
        root: shard directory with manifest.json.
        batch_size: batch in the worker (cheaper transfer); None yields samples.
        shuffle_buffer: per-worker sample shuffle buffer (0 = keep shard order).
        resampled: infinite stream of shards drawn with replacement.
        epoch_samples: nominal epoch length per rank in resampled mode (default: samples / world_size);
            <= 0 streams forever (corrupt data is still skipped and warned about, but the epoch
            report and the max_corrupt_fraction check need an epoch end).
        normalize: add `human_norm` / `candidates_norm` standardised with the manifest's traj_stats.
        image_transform: None (uint8 images only) or "openvla" (adds `pixel_values`).
        drop_last: drop each worker's last partial batch.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        batch_size: int | None = 8,
        shuffle_buffer: int = 256,
        resampled: bool = False,
        epoch_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
        shardshuffle: bool = True,
        normalize: bool = False,
        image_transform: str | None = None,
        drop_last: bool = False,
        decode_images: bool = True,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.urls = shard_paths(self.root, self.manifest)
        self.expected = {u: s["samples"] for u, s in zip(self.urls, self.manifest["shards"], strict=True)}
        if not self.urls:
            raise ValueError(f"{self.root}/manifest.json lists no shards")
        if image_transform not in (None, "openvla"):
            raise ValueError(f"image_transform must be None or 'openvla', got {image_transform!r}")
        self.rank, self.world_size = dist_info(rank, world_size)
        self.batch_size, self.shuffle_buffer, self.resampled = batch_size, shuffle_buffer, resampled
        default_epoch = math.ceil(self.manifest["num_samples"] / self.world_size)
        self.epoch_samples = default_epoch if epoch_samples is None else epoch_samples
        self.seed, self.shardshuffle, self.drop_last = seed, shardshuffle, drop_last
        self.stats = TrajectoryStats.from_manifest(self.manifest) if normalize else None
        self.image_transform, self.decode_images = image_transform, decode_images
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_urls(self) -> list[str]:
        """This rank's shards for the current epoch (before splitting by worker)."""
        urls = list(self.urls)
        if self.shardshuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(urls)
        return urls[self.rank :: self.world_size]

    def _decode(self, raw: dict[str, Any]) -> dict[str, Any]:
        sample = decode_sample(raw, decode_images=self.decode_images)
        if self.stats is not None:
            sample["human_norm"] = self.stats.normalize(sample["human"])
            sample["candidates_norm"] = self.stats.normalize(sample["candidates"])
        if self.image_transform == "openvla":
            sample["pixel_values"] = openvla_pixel_values(sample["images"])
        return sample

    def _finish(self, src: Iterator[dict], health: ShardHealth, limit: int | None) -> Iterator[Any]:
        """Batch, stop after `limit` samples (resampled epochs), then emit the health record."""
        batch: list[dict] = []
        for sample in islice(src, limit):
            if self.batch_size is None:
                yield sample
                continue
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []
        if batch and not self.drop_last:
            yield collate(batch)
        yield {HEALTH_KEY: health.as_dict(), "exact": not self.resampled}

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        stream_seed = hash((self.seed, self.epoch, self.rank, worker)) & 0x7FFFFFFF
        health = ShardHealth()
        if self.resampled:
            shards = wds.ResampledShards(
                self.urls,
                seed=self.seed + self.epoch,
                deterministic=True,
                worker_seed=lambda: self.rank * 1009 + worker,
            )
            stages: list[Any] = [shards]
            limit = math.ceil(self.epoch_samples / num_workers) if self.epoch_samples > 0 else None
        else:
            stages = [wds.SimpleShardList(self.epoch_urls()), wds.split_by_worker]
            limit = None
        stages += [health.track, wds.tarfile_to_samples(handler=health.handler)]
        if self.shuffle_buffer > 1:
            stages.append(
                wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=random.Random(stream_seed))
            )
        stages += [wds.map(self._decode, handler=health.handler), wds.map(health.count)]
        yield from self._finish(iter(wds.DataPipeline(*stages)), health, limit)
