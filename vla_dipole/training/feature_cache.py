"""Frozen-backbone feature cache: run the backbone once per sample, train the heads on stored features.

With a frozen backbone (no LoRA, frozen projector / LLM / ViTs) its output for a sample never
changes, yet it dominates the step time. The cache stores each sample's `Conditioning` (tokens, mask,
proprio) in chunk files `features-<i>.pt` of `CHUNK` samples under `feature_cache.dir` (default
`<output_dir>/feature_cache/round-<r>`), written once (rank 0, atomically) and reused by a resumed run.
Lookups pad the tokens of a micro-batch to the longest one, exactly as the processor pads prompts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from tqdm import tqdm

from vla_dipole.data.collate import collate
from vla_dipole.model.policy import Conditioning
from vla_dipole.training.config import ConfigError
from vla_dipole.training.distributed import gathered_params

CHUNK = 256
INDEX_FILE = "cache_index.json"


class FeatureCache:
    """Per-sample backbone outputs of one dataset, loaded in memory."""

    def __init__(
        self, tokens: list[torch.Tensor], masks: list[torch.Tensor], proprio: list[torch.Tensor]
    ) -> None:
        self.tokens, self.masks, self.proprio = tokens, masks, proprio

    def __len__(self) -> int:
        return len(self.tokens)

    def lookup(self, indices: np.ndarray) -> Conditioning:
        idx = [int(i) for i in indices]
        length = max(self.tokens[i].shape[0] for i in idx)
        tokens = torch.stack([_pad(self.tokens[i], length) for i in idx])
        mask = torch.stack([_pad(self.masks[i], length) for i in idx])
        return Conditioning(tokens, mask, torch.stack([self.proprio[i] for i in idx]))

    @classmethod
    def maybe_build(
        cls, accelerator: Accelerator, cfg: DictConfig, policy: Any, dataset: Any, round_: int
    ) -> FeatureCache | None:
        """None unless `feature_cache.enabled`; builds the cache files if missing, then loads them."""
        if not cfg.feature_cache.enabled:
            return None
        trainable = [n for n, p in policy.backbone.named_parameters() if p.requires_grad]
        if trainable:
            raise ConfigError(
                "config field 'feature_cache.enabled': the cache needs a frozen backbone, but the model config "
                f"trains {len(trainable)} backbone tensors (e.g. {trainable[0]}); disable LoRA / unfreeze options"
            )
        root = Path(cfg.feature_cache.dir or Path(cfg.output_dir) / "feature_cache") / f"round-{round_:02d}"
        accelerator.wait_for_everyone()  # every rank decides on the same file-system state
        if not (root / INDEX_FILE).is_file():
            build(accelerator, policy, dataset, root, batch_size=int(cfg.schedule.micro_batch))
        accelerator.wait_for_everyone()
        return cls.load(root, len(dataset))

    @classmethod
    def load(cls, root: Path, expected: int) -> FeatureCache:
        index = json.loads((root / INDEX_FILE).read_text())
        if index["num_samples"] != expected:
            raise ValueError(
                f"{root / INDEX_FILE}: cache of {index['num_samples']} samples, the dataset has {expected}; "
                "delete the cache directory to rebuild it"
            )
        tokens, masks, proprio = [], [], []
        for name in index["chunks"]:
            chunk = torch.load(root / name, map_location="cpu", weights_only=True)
            tokens += chunk["tokens"]
            masks += chunk["mask"]
            proprio += chunk["proprio"]
        return cls(tokens, masks, proprio)


def _pad(x: torch.Tensor, length: int) -> torch.Tensor:
    if x.shape[0] == length:
        return x
    pad = x.new_zeros((length - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad])


@torch.no_grad()
def build(accelerator: Accelerator, policy: Any, dataset: Any, root: Path, batch_size: int) -> None:
    """Encode every sample once and write the chunk files + index atomically (rank 0 writes).

    Every rank runs the same forward passes so that ZeRO-3's collective parameter gathering stays in
    step; only rank 0 keeps the results.
    """
    is_main = accelerator.is_main_process
    params = list(policy.parameters())
    with gathered_params(accelerator, params):
        if is_main:
            root.mkdir(parents=True, exist_ok=True)
        was_training = policy.training
        policy.eval()
        chunks = []
        for start in tqdm(
            range(0, len(dataset), CHUNK), desc="feature cache", disable=not is_main, dynamic_ncols=True
        ):
            chunk: dict[str, list[torch.Tensor]] = {"tokens": [], "mask": [], "proprio": []}
            for b0 in range(start, min(start + CHUNK, len(dataset)), batch_size):
                ids = range(b0, min(b0 + batch_size, start + CHUNK, len(dataset)))
                cond = policy.encode(collate([dataset[i] for i in ids]))
                for j in range(len(ids)):
                    n = int(cond.mask[j].sum())  # trailing padding is dropped, re-added on lookup
                    keep = n if bool(cond.mask[j, :n].all()) else cond.mask.shape[1]
                    chunk["tokens"].append(cond.tokens[j, :keep].cpu().clone())
                    chunk["mask"].append(cond.mask[j, :keep].cpu().clone())
                    chunk["proprio"].append(cond.proprio[j].cpu().clone())
            name = f"features-{start // CHUNK:06d}.pt"
            if is_main:
                torch.save(chunk, root / f"{name}.tmp")
                os.replace(root / f"{name}.tmp", root / name)
            chunks.append(name)
        policy.train(was_training)
        if is_main:
            (root / f"{INDEX_FILE}.tmp").write_text(
                json.dumps({"num_samples": len(dataset), "chunks": chunks})
            )
            os.replace(root / f"{INDEX_FILE}.tmp", root / INDEX_FILE)
    accelerator.wait_for_everyone()
