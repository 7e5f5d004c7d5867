"""Fixtures of the data area: shards written from samples constructed here (no scenes, no scorer),
so the format and loader tests do not depend on the synthetic world or the PDM engine; and one small
synthetic split (with its NAVSIM metric cache) shared by the build tests."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from data_prep.synthesize import synthesize
from vla_dipole.data.shard_format import SCORE_NAMES, Sample, encode_jpeg
from vla_dipole.data.shard_io import write_sample_shards

# build options of the end-to-end build tests (2 logs x 5 scenes, 8 built, in shards of 3)
BUILD = dict(
    cameras=("cam_f0",),
    image_size=(64, 40),
    history_frames=2,
    sources=("vocab", "perturb"),
    num_candidates={"vocab": 3, "perturb": 2},
    shard_size=3,
    limit=8,
    seed=5,
)


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


@pytest.fixture(scope="session")
def split_root(tmp_path_factory) -> Path:
    """A synthetic split 'unit': 2 logs of 18 frames, 10 scenes, JSON maps."""
    root = tmp_path_factory.mktemp("synthetic")
    synthesize(root, "unit", 2, 0, frames_per_log=18, image_size=(96, 54), workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def unit_metric_cache(split_root, tmp_path_factory) -> Path:
    """A NAVSIM metric cache of every 'unit' scene, written with the official navsim classes."""
    if importlib.util.find_spec("navsim") is None:
        pytest.skip("official navsim not installed (make install-navsim); the metric-cache path needs it")
    from navsim_adapter.pdm.metric_cache import write_split_cache

    return write_split_cache(split_root, "unit", tmp_path_factory.mktemp("metric_cache"))


@pytest.fixture(scope="session")
def mapless_root(split_root, tmp_path_factory) -> Path:
    """The same logs and images without the synthetic JSON maps: what a real OpenScene root looks like
    to the builder (its nuPlan maps are only reachable through a metric cache)."""
    root = tmp_path_factory.mktemp("mapless")
    for name in ("navsim_logs", "sensor_blobs"):
        (root / name).symlink_to(split_root / name, target_is_directory=True)
    return root
