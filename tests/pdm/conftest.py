"""Fixtures for the PDM engine tests: toy-road contexts in the global frame."""

from __future__ import annotations

import pytest

from tests.pdm.toy_road import toy_context


@pytest.fixture
def road():
    """Factory: a toy-road context (road frame = global frame) with the given agents."""

    def make(agents=(), ego_x=0.0, ego_speed=10.0, red_steps=None, **kw):
        return toy_context(
            0,
            ego_x=ego_x,
            ego_speed=ego_speed,
            agents=list(agents),
            red_steps=red_steps,
            origin=(0.0, 0.0, 0.0),
            **kw,
        )

    return make


@pytest.fixture(scope="session")
def pdm_world(tmp_path_factory):
    """A synthetic world with one log per scenario family (all 8), tiny images."""
    from data_prep.synthesize import synthesize
    from data_prep.world.scenarios import FAMILIES

    root = tmp_path_factory.mktemp("pdm_world")
    synthesize(
        root,
        "pdm",
        len(FAMILIES),
        7,
        frames_per_log=20,
        image_size=(32, 18),
        cameras=("CAM_F0",),
        workers=1,
        progress=False,
    )
    return root


@pytest.fixture(scope="session")
def pdm_scenes(pdm_world):
    """Two scenes per log of the synthetic world."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    loader = SceneLoader("pdm", data_root=pdm_world, scene_filter=SceneFilter(frame_interval=3))
    by_log: dict[str, list] = {}
    for tok in loader.tokens:
        scene = loader.get_scene(tok)
        by_log.setdefault(scene.metadata.log_name, []).append(scene)
    return [s for scenes in by_log.values() for s in scenes[:2]]
