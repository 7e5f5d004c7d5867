"""PDM-Closed reference plans of a build, kept for later builds of the same scenes.

Scoring a scene built from its log (no metric cache) first runs the reference planner, which
normalises ego progress; that is most of a ScoringContext's cost and does not depend on the
candidates. Each shard therefore leaves `OUT/.build/<shard>.reference.npz` (tokens and [41, 3] poses),
and an online round, which re-scores the offline build's scenes with new candidates every round, reuses
them instead of planning again: same scores, about half of a round's scoring time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from data_prep.shard_settings import BUILD_DIR
from navsim_adapter.pdm.simulation import NUM_STEPS

SUFFIX = ".reference.npz"


def plans_path(out: Path, shard: str) -> Path:
    return Path(out) / BUILD_DIR / f"{shard}{SUFFIX}"


def save_plans(path: Path, plans: Mapping[str, np.ndarray]) -> None:
    """Write token -> poses atomically (a killed build never leaves a half-written file)."""
    tokens = sorted(plans)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, tokens=np.array(tokens, dtype=str), poses=np.stack([plans[t] for t in tokens]))
    os.replace(tmp, path)


def load_plans(shards: str | Path) -> dict[str, np.ndarray]:
    """token -> reference poses left by the build in `shards`; empty when it used another scorer version
    (its plans may differ) or left none (built before plans were kept, or from a metric cache)."""
    from navsim_adapter.pdm.scorer import SCORER_VERSION
    from vla_dipole.data.shard_io import read_manifest

    if str(read_manifest(shards).get("scorer_version")) != str(SCORER_VERSION):
        return {}
    plans: dict[str, np.ndarray] = {}
    for path in sorted((Path(shards) / BUILD_DIR).glob(f"*{SUFFIX}")):
        with np.load(path) as data:
            tokens, poses = data["tokens"], data["poses"]
        if poses.shape != (len(tokens), NUM_STEPS + 1, 3):
            raise ValueError(
                f"{path}: field 'poses' has shape {poses.shape}, expected ({len(tokens)}, {NUM_STEPS + 1}, 3)"
            )
        plans.update(zip(tokens.tolist(), poses, strict=True))
    return plans
