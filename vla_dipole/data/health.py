"""Bookkeeping of corrupt shards and samples: the webdataset `handler=` that skips and counts them,
and the per-epoch report that raises once too much data was lost."""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class CorruptShardsError(RuntimeError):
    """Raised when the skipped fraction of an epoch exceeds `max_corrupt_fraction`."""


def _url_of(exn: BaseException) -> str:
    """webdataset appends the shard url to exn.args; our decode errors carry it in the message."""
    for arg in reversed(getattr(exn, "args", ())):
        if isinstance(arg, str) and arg.endswith(".tar"):
            return arg
    found = re.findall(r"[^\s'\"<>=]+\.tar\b", " ".join(map(str, getattr(exn, "args", ()))))
    return found[-1] if found else "?"


@dataclass
class ShardHealth:
    """Per-worker counts: shards opened, samples delivered per shard, and errors per shard."""

    opened: Counter = field(default_factory=Counter)
    delivered: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)

    def handler(self, exn: BaseException) -> bool:
        """webdataset handler: warn, count, keep going."""
        url = _url_of(exn)
        self.errors[url] += 1
        self.messages.setdefault(url, f"{type(exn).__name__}: {exn}"[:300])
        warnings.warn(f"skipping corrupt data in {url}: {type(exn).__name__}: {exn}"[:400], stacklevel=2)
        return True

    def track(self, src):
        """Pipeline stage recording every shard url as it is opened."""
        for item in src:
            self.opened[item["url"]] += 1
            yield item

    def count(self, sample: dict[str, Any]) -> dict[str, Any]:
        self.delivered[sample.get("__url__", "?")] += 1
        return sample

    def as_dict(self) -> dict[str, Any]:
        return {
            "opened": dict(self.opened),
            "delivered": dict(self.delivered),
            "errors": dict(self.errors),
            "messages": dict(self.messages),
        }


@dataclass
class EpochReport:
    """Merged over all workers of one rank for one epoch."""

    samples: int = 0
    expected: int = 0
    skipped: int = 0
    bad_shards: dict[str, str] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.skipped / max(self.expected, self.samples + self.skipped, 1)

    def add(self, health: dict[str, Any], expected_per_shard: dict[str, int], exact: bool) -> None:
        """`exact`: every opened shard was read to its end (epoch mode), so missing = expected - delivered."""
        delivered = Counter(health["delivered"])
        self.samples += sum(delivered.values())
        for url, times in health["opened"].items():
            want = expected_per_shard.get(url, 0) * times
            self.expected += want
            missing = max(want - delivered[url], 0) if exact else 0
            lost = max(missing, health["errors"].get(url, 0))
            if lost:
                self.skipped += lost
                self.bad_shards[url] = health["messages"].get(url, f"{missing} of {want} samples missing")
        for url, n in health["errors"].items():
            if url not in health["opened"]:
                self.skipped += n
                self.bad_shards[url] = health["messages"].get(url, "error")

    def check(self, max_fraction: float) -> None:
        log.info("epoch data report: %s", self.summary())
        if self.skipped:
            warnings.warn(f"data loader skipped data this epoch: {self.summary()}", stacklevel=2)
        if self.fraction > max_fraction:
            names = "; ".join(f"{u} ({m})" for u, m in sorted(self.bad_shards.items()))
            raise CorruptShardsError(
                f"{self.skipped} of {max(self.expected, self.samples + self.skipped)} samples "
                f"({self.fraction:.1%}) were corrupt or missing, above max_corrupt_fraction={max_fraction:.1%}. "
                f"Bad shards: {names}. Rebuild them (python -m data_prep.build_shards, same command) or "
                "check them with python -m data_prep.validate."
            )

    def summary(self) -> str:
        return (
            f"{self.samples} samples delivered, {self.skipped} skipped ({self.fraction:.2%}), "
            f"{len(self.bad_shards)} bad shards {sorted(self.bad_shards)}"
        )
