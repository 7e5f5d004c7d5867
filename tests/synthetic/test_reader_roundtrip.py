"""Synthetic logs read back through the project's OpenScene reader (`SceneLoader`) unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Point

from navsim_adapter.geometry import global_to_local
from navsim_adapter.maps import MapLayer, SyntheticMap
from navsim_adapter.scene_loader import SceneFilter, SceneLoader


@pytest.fixture(scope="module")
def loader(synthetic_split):
    return SceneLoader(
        synthetic_split.split, data_root=synthetic_split.root, scene_filter=SceneFilter(frame_interval=3)
    )


def test_every_log_and_family_yields_scenes(loader, synthetic_split):
    assert sorted(loader.log_names) == sorted(p.stem for p in synthetic_split.logs)
    assert len(loader) == len(synthetic_split.logs) * 3  # 20 frames, windows of 14 every 3 frames


def test_trajectories_match_the_driven_poses(loader, synthetic_split):
    truth = {p.stem: synthetic_split.truth(p) for p in synthetic_split.logs}
    for scene in loader.iter_scenes():
        t = truth[scene.metadata.log_name]
        k = t["frame_tokens"].index(scene.metadata.scene_token)
        poses = np.array(t["ego_poses_global"])
        np.testing.assert_allclose(
            scene.get_future_trajectory(8), global_to_local(poses[k + 1 : k + 9], poses[k]), atol=1e-9
        )
        np.testing.assert_allclose(
            scene.get_history_trajectory(), global_to_local(poses[k - 3 : k + 1], poses[k]), atol=1e-9
        )
        status = scene.current_frame.ego_status
        assert status.ego_velocity[0] == pytest.approx(t["ego_speed"][k])
        command = ("left", "straight", "right", "unknown")[int(np.argmax(status.driving_command))]
        assert command == t["driving_commands"][k]


def test_images_load_with_the_configured_size(loader, synthetic_split):
    scene = loader.get_scene(loader.tokens[0])
    agent_input = scene.get_agent_input(cameras=("cam_f0", "cam_l0", "cam_r0"))
    for cams in agent_input.cameras:
        for cam in (cams.cam_f0, cams.cam_l0, cams.cam_r0):
            width, height = synthetic_split.image_size
            assert cam.image.shape == (height, width, 3) and cam.image.dtype == np.uint8
            assert cam.image.std() > 5  # a rendered scene, not a blank frame


def test_map_loads_through_the_scene(loader):
    for log_name in loader.log_names:
        token = next(t for t in loader.tokens if loader.get_scene(t).metadata.log_name == log_name)
        scene = loader.get_scene(token)
        m = scene.map_api
        assert isinstance(m, SyntheticMap) and m.map_name == scene.metadata.map_name
        frame = scene.current_frame
        route = m.lanes_of_roadblocks(frame.roadblock_ids)
        x, y, _ = frame.ego_status.ego_pose
        assert any(lane.polygon.buffer(1.5).contains(Point(x, y)) for lane in route)
        for cid, _ in frame.traffic_lights:
            assert m.lane(cid).layer == MapLayer.LANE_CONNECTOR


def test_annotations_round_trip(loader, synthetic_split):
    import pickle

    scene = loader.get_scene(loader.tokens[0])
    raw = pickle.loads(
        (
            synthetic_split.root / "navsim_logs" / synthetic_split.split / f"{scene.metadata.log_name}.pkl"
        ).read_bytes()
    )
    by_token = {f["token"]: f for f in raw}
    for frame in scene.frames:
        anns = by_token[frame.token]["anns"]
        np.testing.assert_array_equal(frame.annotations.boxes, anns["gt_boxes"])
        assert list(frame.annotations.names) == anns["gt_names"]
        assert list(frame.annotations.track_tokens) == anns["track_tokens"]
