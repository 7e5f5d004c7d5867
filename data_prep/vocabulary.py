"""Trajectory vocabulary: k-means over a split's human trajectories (Hydra-MDP-style planners use 256-8192).

The vocabulary is the `vocab` candidate source of build_shards. It is saved as an artifact
directory holding `vocabulary.npy` (float32 (V, 8, 3)) and `vocabulary.json` (its config and the
sha256 of the .npy bytes, which shard manifests record).

    python -m data_prep.vocabulary --data-root DATA --split navtrain --size 256 --out vocab/
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_dipole.data.shard_format import NUM_POSES

VOCAB_ARRAY = "vocabulary.npy"
VOCAB_CONFIG = "vocabulary.json"


def fit_vocabulary(trajectories: np.ndarray, size: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """k-means (k-means++ init, fixed seed) on the (x, y) of every pose; returns (V, 8, 3) cluster means.

    Headings are averaged on the circle per cluster. V = min(size, number of distinct trajectories);
    clusters that end empty are dropped, so V can be a little smaller than `size`.
    """
    trajs = np.asarray(trajectories, dtype=np.float64)
    if trajs.ndim != 3 or trajs.shape[1:] != (NUM_POSES, 3):
        raise ValueError(f"trajectories must be (N, {NUM_POSES}, 3), got {trajs.shape}")
    if size < 1:
        raise ValueError(f"vocabulary size must be >= 1, got {size}")
    features = trajs[:, :, :2].reshape(len(trajs), -1)
    distinct = len(np.unique(features.round(3), axis=0))
    k = min(size, distinct)
    if k < size:
        warnings.warn(
            f"only {distinct} distinct trajectories: vocabulary size {size} reduced to {k}", stacklevel=2
        )
    from scipy.cluster.vq import kmeans2  # lazy: build workers never fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about empty clusters; we drop them below
        _, labels = kmeans2(features, k, iter=iters, minit="++", seed=np.random.default_rng(seed))
    vocab = []
    for c in range(k):
        members = trajs[labels == c]
        if len(members) == 0:
            continue
        xy = members[:, :, :2].mean(0)
        heading = np.arctan2(np.sin(members[:, :, 2]).mean(0), np.cos(members[:, :, 2]).mean(0))
        vocab.append(np.concatenate([xy, heading[:, None]], axis=1))
    return np.stack(vocab).astype(np.float32)


def vocabulary_hash(vocab: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vocab, dtype=np.float32), allow_pickle=False)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def save_vocabulary(out: str | Path, vocab: np.ndarray, config: dict[str, Any]) -> dict[str, Any]:
    """Write the artifact directory; returns its config (with `size` and `sha256`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = np.ascontiguousarray(vocab, dtype=np.float32)
    np.save(out / VOCAB_ARRAY, vocab, allow_pickle=False)
    config = {**config, "size": int(len(vocab)), "sha256": vocabulary_hash(vocab)}
    (out / VOCAB_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


def load_vocabulary(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Load an artifact directory (or its .npy); checks shape and hash."""
    path = Path(path)
    root = path if path.is_dir() else path.parent
    array_path, config_path = root / VOCAB_ARRAY, root / VOCAB_CONFIG
    if not array_path.is_file():
        raise FileNotFoundError(f"{array_path}: no vocabulary (make one with python -m data_prep.vocabulary)")
    vocab = np.load(array_path, allow_pickle=False)
    if vocab.ndim != 3 or vocab.shape[1:] != (NUM_POSES, 3) or not np.isfinite(vocab).all():
        raise ValueError(
            f"{array_path}: expected finite float (V, {NUM_POSES}, 3), got {vocab.dtype}{vocab.shape}"
        )
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    digest = vocabulary_hash(vocab)
    if config.get("sha256", digest) != digest:
        raise ValueError(f"{config_path}: sha256 {config['sha256']} does not match {array_path} ({digest})")
    return vocab.astype(np.float32), {**config, "size": int(len(vocab)), "sha256": digest}


def open_split(
    data_root: str | Path, split: str, frame_interval: int = 1, log_names: list[str] | None = None
):
    """The split's SceneLoader as the shard tools see it: NAVSIM's 4 history + 10 future frames,
    a scene at every `frame_interval`-th frame (1 = every frame, as navtest/navtrain do)."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    scene_filter = SceneFilter(
        num_history_frames=4, num_future_frames=10, frame_interval=frame_interval, log_names=log_names
    )
    return SceneLoader(split, data_root, scene_filter)


def human_trajectories(
    data_root: str | Path, split: str, limit: int | None = None, frame_interval: int = 1
) -> np.ndarray:
    """(N, 8, 3) future trajectories of the split's first `limit` scenes in (log, time) order."""
    from tqdm import tqdm

    loader = open_split(data_root, split, frame_interval)
    tokens = loader.tokens[:limit]
    return np.stack(
        [
            loader.get_scene(t).get_future_trajectory(NUM_POSES)
            for t in tqdm(tokens, desc="human trajectories")
        ]
    ).astype(np.float32)


def build_vocabulary(
    data_root: str | Path,
    split: str,
    out: str | Path,
    size: int = 256,
    seed: int = 0,
    limit: int | None = None,
    frame_interval: int = 1,
) -> dict[str, Any]:
    """Fit on the split's human trajectories and save; returns the artifact config."""
    trajs = human_trajectories(data_root, split, limit, frame_interval)
    vocab = fit_vocabulary(trajs, min(size, len(trajs)), seed)
    config = {
        "split": split,
        "data_root": str(data_root),
        "requested_size": size,
        "seed": seed,
        "num_trajectories": int(len(trajs)),
        "limit": limit,
        "frame_interval": frame_interval,
        "method": "kmeans2(x,y)++",
    }
    return save_vocabulary(out, vocab, config)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-root", required=True, help="OpenScene-format root (navsim_logs/<split>/*.pkl)"
    )
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, help="artifact directory to write")
    parser.add_argument("--size", type=int, default=256, help="number of clusters (256-8192 typical)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N scenes")
    parser.add_argument("--frame-interval", type=int, default=1, help="a scene every N frames")
    args = parser.parse_args(argv)
    config = build_vocabulary(
        args.data_root, args.split, args.out, args.size, args.seed, args.limit, args.frame_interval
    )
    print(
        f"vocabulary of {config['size']} trajectories from {config['num_trajectories']} scenes -> {args.out} "
        f"(sha256 {config['sha256'][:12]})"
    )


if __name__ == "__main__":
    main()
