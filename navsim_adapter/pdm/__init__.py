"""Vectorised NAVSIM PDM-score engine (the DIPOLE reward).

`score(contexts, trajectories [B, N, 8, 3]) -> PDMResult` with one [B, N] array per sub-score,
matching the official NAVSIM v2 scorer (see tests/pdm/test_equivalence.py).
"""

from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.scorer import SCORER_VERSION, PDMResult, score

__all__ = ["SCORER_VERSION", "PDMResult", "ScoringContext", "build_context", "score"]


def build_context(scene, **kwargs) -> ScoringContext:
    """ScoringContext from our Scene (+ its MapAPI); see navsim_adapter.pdm.scene_context."""
    from navsim_adapter.pdm.scene_context import build_context as _build

    return _build(scene, **kwargs)
