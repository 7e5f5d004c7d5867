"""safetensors files that say when they are damaged: a sha256 of the tensor bytes in the metadata.

A truncated file fails to parse and a flipped byte in a header fails too, but garbage inside the tensor
data loads silently; the checksum written with the file catches it. Every error names the file. Files
written before the checksum existed load with the parse and finiteness checks only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

CHECKSUM_KEY = "tensors_sha256"


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checked(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    save_file(dict(tensors), str(path), metadata={**metadata, CHECKSUM_KEY: tensors_digest(tensors)})


def load_checked(path: Path) -> dict[str, torch.Tensor]:
    """load_file, with every failure a ValueError naming `path` and what is wrong."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: unreadable safetensors file (truncated or garbled?): {exc}") from None
    want = metadata.get(CHECKSUM_KEY)
    if want is not None and tensors_digest(state) != want:
        raise ValueError(f"{path}: tensor data differ from the checksum written with them (damaged file)")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensors hold NaN/inf (e.g. {bad[:3]})")
    return state
