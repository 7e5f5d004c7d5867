"""Small scored shards written directly in the shard format, for tests and the training bench.

No scenes and no PDM engine: each scene has a smooth human trajectory, K noisy candidates and a
reward that is a real function of the candidate (exp(-mean distance to the human trajectory / 2)),
so advantages, DIPOLE weights and learning curves are meaningful without the full data pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_dipole.data.shard_format import JPEG_QUALITY, SCORE_NAMES, Sample, encode_jpeg
from vla_dipole.data.shard_io import write_sample_shards


def _scene(index: int, rng: np.random.Generator, k: int) -> Sample:
    t = np.arange(1, 9)[:, None] * 0.5
    speed, curve = rng.uniform(3, 9), rng.normal(0, 0.05)
    x, y = t * speed, curve * (t * speed) ** 2
    human = np.concatenate([x, y, np.arctan2(2 * curve * x, 1)], axis=1).astype(np.float32)
    offsets = rng.normal(0, 1.0, size=(k, 1, 3)) * np.array([1.5, 1.0, 0.1])
    candidates = (human[None] + offsets + rng.normal(0, 0.2, size=(k, 8, 3))).astype(np.float32)
    dist = np.linalg.norm(candidates[..., :2] - human[None, ..., :2], axis=-1).mean(-1)
    scores = np.tile(np.exp(-dist / 2)[:, None], (1, len(SCORE_NAMES))).astype(np.float32)
    scores[:, SCORE_NAMES.index("epdms")] *= 0.9
    image = np.full((48, 64, 3), int(speed * 20), np.uint8)
    image[:, : int(32 + 100 * curve)] = 40
    command = np.eye(4, dtype=np.uint8)[[1 if abs(curve) < 0.03 else (0 if curve > 0 else 2)]]
    return Sample(
        token=f"scene{index:05d}",
        log_name=f"log{index % 3}",
        map_name="synthetic",
        split="unit",
        timestamp_us=index * 10**6,
        cameras=["cam_f0"],
        image_size=(32, 24),
        images=[encode_jpeg(image, (32, 24))],
        ego_pose=np.zeros((1, 3), np.float32),
        ego_velocity=np.array([[speed, 0.0]], np.float32),
        ego_acceleration=np.zeros((1, 2), np.float32),
        driving_command=command,
        human=human,
        candidates=candidates,
        sources=np.array([i % 2 for i in range(k)], np.uint8),
        candidate_scores=scores,
        human_scores=np.ones(len(SCORE_NAMES), np.float32),
    )


def write_shards(out: Path, num_samples: int = 32, k: int = 4, per_shard: int = 16, seed: int = 0) -> Path:
    """A shard build of `num_samples` scenes with `k` scored candidates each (+ manifest)."""
    rng = np.random.default_rng(seed)
    # Scenes are drawn lazily, shard by shard, in index order: the RNG stream fixes every byte.
    groups = (
        (_scene(i, rng, k) for i in range(s, min(s + per_shard, num_samples)))
        for s in range(0, num_samples, per_shard)
    )
    image = {
        "cameras": ["cam_f0"],
        "size": [32, 24],
        "history_frames": 1,
        "format": "jpeg",
        "quality": JPEG_QUALITY,
    }
    write_sample_shards(out, "unit", groups, candidate_sources={"vocab": k}, num_candidates=k, image=image)
    return out
