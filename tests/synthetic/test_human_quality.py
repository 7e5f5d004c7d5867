"""The logged driver scored by the project's PDM scorer: good, imperfect, and worse with more noise."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.synthesize import synthesize
from navsim_adapter.pdm.scene_context import build_context
from navsim_adapter.pdm.scorer import score
from navsim_adapter.scene_loader import SceneFilter, SceneLoader


def _human_pdms(root, split: str) -> np.ndarray:
    loader = SceneLoader(split, data_root=root, scene_filter=SceneFilter(frame_interval=3))
    contexts, trajectories = [], []
    for scene in loader.iter_scenes():
        contexts.append(build_context(scene))
        trajectories.append(scene.get_future_trajectory(8)[None])
    return score(contexts, np.stack(trajectories), human_filter=False).pdms[:, 0]


@pytest.mark.slow
def test_noisier_driver_scores_lower(tmp_path):
    options = dict(frames_per_log=20, image_size=(16, 9), cameras=("CAM_F0",), workers=1, progress=False)
    synthesize(tmp_path, "clean", 8, seed=11, driver_noise=0.0, **options)
    synthesize(tmp_path, "noisy", 8, seed=11, driver_noise=2.5, **options)
    clean, noisy = _human_pdms(tmp_path, "clean"), _human_pdms(tmp_path, "noisy")
    print(f"human PDMS: clean {clean.mean():.3f}, noisy {noisy.mean():.3f}")
    assert clean.mean() > 0.85, clean
    assert noisy.mean() < clean.mean() - 0.03, (noisy.mean(), clean.mean())
