"""Training-side loader: a torch DataLoader over ShardDataset that strips the workers' health
records, reports skipped data at the end of every epoch and stops when too much was lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from vla_dipole.data.dataset import HEALTH_KEY, ShardDataset
from vla_dipole.data.health import EpochReport


def _identity(item: Any) -> Any:
    return item


class ShardLoader:
    """Iterate batches of one epoch; `last_report` holds that epoch's skipped-data report."""

    def __init__(
        self,
        dataset: ShardDataset,
        num_workers: int = 0,
        max_corrupt_fraction: float = 0.01,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
    ) -> None:
        self.dataset = dataset
        self.max_corrupt_fraction = max_corrupt_fraction
        self.last_report: EpochReport | None = None
        self.loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            collate_fn=_identity,
            prefetch_factor=prefetch_factor if num_workers else None,
            persistent_workers=persistent_workers and num_workers > 0,
        )

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        report = EpochReport()
        for item in self.loader:
            if isinstance(item, dict) and HEALTH_KEY in item:
                report.add(item[HEALTH_KEY], self.dataset.expected, exact=item["exact"])
                continue
            yield item
        self.last_report = report
        report.check(self.max_corrupt_fraction)


def make_loader(
    root: str | Path,
    batch_size: int | None = 8,
    num_workers: int = 0,
    *,
    max_corrupt_fraction: float = 0.01,
    **dataset_kwargs: Any,
) -> ShardLoader:
    """ShardDataset(root, batch_size=..., **dataset_kwargs) wrapped in a ShardLoader."""
    dataset = ShardDataset(root, batch_size=batch_size, **dataset_kwargs)
    return ShardLoader(dataset, num_workers=num_workers, max_corrupt_fraction=max_corrupt_fraction)
