"""Vectorised NAVSIM PDM-score engine (the DIPOLE reward).

`score(contexts, trajectories [B, N, 8, 3]) -> PDMResult` with one [B, N] array per sub-score,
matching the official NAVSIM v2 scorer (see tests/pdm/test_equivalence.py).

The engine loads on first use of one of its names, so reading the score names
(`navsim_adapter.pdm.columns`, e.g. by the shard codec) does not import shapely and the scorer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from navsim_adapter.pdm.context import ScoringContext
    from navsim_adapter.pdm.scorer import SCORER_VERSION, PDMResult, score

__all__ = ["SCORER_VERSION", "PDMResult", "ScoringContext", "build_context", "score"]
_LAZY = {
    "ScoringContext": "navsim_adapter.pdm.context",
    "SCORER_VERSION": "navsim_adapter.pdm.scorer",
    "PDMResult": "navsim_adapter.pdm.scorer",
    "score": "navsim_adapter.pdm.scorer",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_context(scene, **kwargs) -> ScoringContext:
    """ScoringContext from our Scene (+ its MapAPI); see navsim_adapter.pdm.scene_context."""
    from navsim_adapter.pdm.scene_context import build_context as _build

    return _build(scene, **kwargs)
