"""A split written by data_prep.synthesize reads back as the path its generator drove."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_prep import synthesize
from navsim_adapter.evaluation.visualize import plot_scene
from navsim_adapter.scene import DRIVING_COMMANDS
from navsim_adapter.scene_loader import SceneFilter, SceneLoader

FAMILIES = ("lane_follow_curve", "intersection_turn", "pedestrian_crossing")


def se2(pose):
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.array([[c, -s, pose[0]], [s, c, pose[1]], [0.0, 0.0, 1.0]])


def relative(pose, origin):
    """Pose in origin's frame via homogeneous matrices (independent of navsim_adapter.geometry)."""
    m = np.linalg.inv(se2(origin)) @ se2(pose)
    return np.array([m[0, 2], m[1, 2], np.arctan2(m[1, 0], m[0, 0])])


@pytest.fixture(scope="module")
def synthetic_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    synthesize.synthesize(
        root,
        "mini",
        len(FAMILIES),
        seed=3,
        frames_per_log=18,
        image_size=(48, 32),
        families=FAMILIES,
        workers=1,
        progress=False,
    )
    truth = {}
    for path in (root / synthesize.GROUND_TRUTH_DIR / "mini").glob("*.json"):
        data = json.loads(path.read_text())
        truth[data["log_name"]] = data
    return root, truth


def test_human_future_equals_the_generators_driven_path(synthetic_split):
    root, truth = synthetic_split
    loader = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(frame_interval=1))
    assert len(loader) == len(FAMILIES) * (18 - 14 + 1)
    assert sorted(loader.log_names) == sorted(truth)
    for scene in loader.iter_scenes():
        gt = truth[scene.metadata.log_name]
        poses = np.asarray(gt["ego_poses_global"])
        k = gt["frame_tokens"].index(scene.token)
        expected = np.stack([relative(poses[k + i], poses[k]) for i in range(1, 9)])
        np.testing.assert_allclose(scene.get_future_trajectory(), expected, atol=1e-6)
        history = np.stack([relative(poses[k + i], poses[k]) for i in range(-3, 1)])
        np.testing.assert_allclose(scene.get_history_trajectory(), history, atol=1e-6)
        assert [f.timestamp for f in scene.frames] == gt["timestamps_us"][k - 3 : k + 11]
        assert scene.current_frame.ego_status.ego_velocity[0] == pytest.approx(gt["ego_speed"][k])
        assert scene.current_frame.roadblock_ids == gt["route_roadblock_ids"]
        assert scene.metadata.map_name == gt["map_name"]
        command = scene.current_frame.ego_status.driving_command
        assert DRIVING_COMMANDS[int(np.argmax(command))] == gt["driving_commands"][k] and command.sum() == 1


def test_generated_images_and_map_feed_the_visualiser(synthetic_split):
    from matplotlib.figure import Figure

    root, _ = synthetic_split
    loader = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(max_scenes=1))
    scene = loader.get_scene(loader.tokens[0])
    assert scene.current_frame.cameras.cam_f0.image.shape == (32, 48, 3)
    ax = Figure().subplots()
    plot_scene(scene, ax)  # map_api="auto" -> the synthetic JSON map
    map_patches = [p for p in ax.patches if str(p.get_gid()).startswith("map:")]
    assert map_patches, "the synthetic map's polygons should be drawn"
    # the ego's rear axle (plot origin) lies on drawn drivable area
    assert any(p.get_path().contains_point((0.0, 0.0)) for p in map_patches)
