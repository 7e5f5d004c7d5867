"""k-means trajectory vocabulary: recovers clusters, is seeded, and its artifact is hash-checked."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.vocabulary import fit_vocabulary, load_vocabulary, save_vocabulary

T = np.arange(1, 9) * 0.5


def _clustered(rng, n_per=40):
    centers = [
        np.stack([T * v, T * lat, np.full(8, lat * 0.2)], axis=1) for v, lat in ((3, 0), (8, 1), (12, -1))
    ]
    trajs = [c + rng.normal(0, 0.05, c.shape) for c in centers for _ in range(n_per)]
    return np.stack(trajs), np.stack(centers)


def test_kmeans_recovers_cluster_means_deterministically():
    trajs, centers = _clustered(np.random.default_rng(0))
    vocab = fit_vocabulary(trajs, 3, seed=1)
    assert vocab.shape == (3, 8, 3) and vocab.dtype == np.float32
    order = np.argsort(vocab[:, -1, 0])
    np.testing.assert_allclose(vocab[order], centers, atol=0.05)
    np.testing.assert_array_equal(fit_vocabulary(trajs, 3, seed=1), vocab)


def test_size_is_capped_by_distinct_trajectories():
    trajs = np.repeat(_clustered(np.random.default_rng(1))[1], 5, axis=0)
    with pytest.warns(UserWarning, match="reduced to 3"):
        assert len(fit_vocabulary(trajs, 10)) == 3


def test_artifact_round_trip_and_tamper_detection(tmp_path):
    trajs, _ = _clustered(np.random.default_rng(2))
    vocab = fit_vocabulary(trajs, 4, seed=0)
    config = save_vocabulary(tmp_path / "v", vocab, {"split": "unit", "seed": 0})
    loaded, loaded_config = load_vocabulary(tmp_path / "v")
    np.testing.assert_array_equal(loaded, vocab)
    assert loaded_config["sha256"] == config["sha256"] and loaded_config["split"] == "unit"
    np.save(tmp_path / "v" / "vocabulary.npy", vocab * 2)
    with pytest.raises(ValueError, match="does not match"):
        load_vocabulary(tmp_path / "v")
