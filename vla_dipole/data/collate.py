"""Decoded shard samples -> a batch of tensors (layout in docs/shards.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FLOAT_KEYS = (
    "ego_pose",
    "ego_velocity",
    "ego_acceleration",
    "driving_command",
    "human",
    "candidates",
    "candidate_scores",
    "human_scores",
    "human_norm",
    "candidates_norm",
    "pixel_values",
)
STRING_KEYS = ("token", "log_name")


def _stack(values: Sequence[Any]) -> torch.Tensor:
    if isinstance(values[0], torch.Tensor):
        return torch.stack(list(values))
    return torch.from_numpy(np.stack(values))


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack per-sample arrays; images stay uint8 (B, N, h, w, 3), sources int64, other arrays float32."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    first = samples[0]
    batch: dict[str, Any] = {}
    for key in FLOAT_KEYS:
        if key in first:
            batch[key] = _stack([s[key] for s in samples]).float()
    if "images" in first:
        batch["images"] = _stack([s["images"] for s in samples])
    if "sources" in first:
        batch["sources"] = _stack([s["sources"] for s in samples]).long()
    for key in STRING_KEYS:
        if key in first:
            batch[key] = [s[key] for s in samples]
    return batch
