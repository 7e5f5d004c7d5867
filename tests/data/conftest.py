"""Fixtures of the data area: shards written from samples constructed here (no scenes, no scorer),
so the format and loader tests do not depend on the synthetic world or the PDM engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from data_prep.shard_format import SCORE_NAMES, Sample, encode_jpeg, write_sample_shards


def make_sample(token: str, rng: np.random.Generator, k: int = 6, history: int = 2, size=(32, 24)) -> Sample:
    cams = ["cam_f0"]
    images = [
        encode_jpeg(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), size)
        for _ in range(history * len(cams))
    ]
    t = np.arange(1, 9)[:, None] * 0.5
    human = np.concatenate([t * rng.uniform(2, 10), t * rng.normal(0, 0.2), np.zeros_like(t)], axis=1)
    return Sample(
        token=token,
        log_name=f"log{int(token[-2:]) % 3}",
        map_name="synthetic_town",
        split="unit",
        timestamp_us=int(rng.integers(1e12)),
        cameras=cams,
        image_size=size,
        images=images,
        ego_pose=rng.normal(size=(history, 3)),
        ego_velocity=rng.normal(size=(history, 2)),
        ego_acceleration=rng.normal(size=(history, 2)),
        driving_command=np.eye(4, dtype=np.uint8)[rng.integers(0, 4, history)],
        human=human,
        candidates=human[None] + rng.normal(size=(k, 8, 3)),
        sources=np.array([i % 2 for i in range(k)], np.uint8),
        candidate_scores=rng.uniform(size=(k, len(SCORE_NAMES))),
        human_scores=rng.uniform(size=len(SCORE_NAMES)),
    )


def write_build(out: Path, num_shards: int, per_shard: int, seed: int = 0, **sample_kw) -> dict:
    """Write num_shards shards of per_shard samples plus a manifest the loader accepts."""
    rng = np.random.default_rng(seed)

    def token(n: int) -> str:
        return hashlib.sha1(f"{seed}-{n}".encode()).hexdigest()[:14] + f"{n % 100:02d}"

    groups = [
        [make_sample(token(s * per_shard + i), rng, **sample_kw) for i in range(per_shard)]
        for s in range(num_shards)
    ]
    return write_sample_shards(
        out,
        "unit",
        groups,
        num_candidates=sample_kw.get("k", 6),
        candidate_sources={"vocab": 3, "perturb": 3},
    )


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    """4 shards x 10 samples."""
    write_build(tmp_path / "shards", num_shards=4, per_shard=10)
    return tmp_path / "shards"
