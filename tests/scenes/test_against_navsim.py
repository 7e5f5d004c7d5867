"""Our reader against the official navsim reader on the same synthetic OpenScene logs."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_adapter.scene_loader import SceneFilter, SceneLoader

pytestmark = pytest.mark.navsim

FILTERS = [
    {},
    {"frame_interval": 1},
    {"frame_interval": 1, "has_route": False},
    {"frame_interval": 2, "num_history_frames": 2, "num_future_frames": 8},
]


@pytest.fixture(scope="module")
def official():
    dataloader = pytest.importorskip(
        "navsim.common.dataloader", reason="official navsim not installed (make install-navsim)"
    )
    dataclasses = pytest.importorskip("navsim.common.dataclasses")
    return dataloader, dataclasses


@pytest.mark.parametrize("kwargs", FILTERS)
def test_same_scene_tokens_as_navsim(arc_split, official, kwargs):
    dataloader, dataclasses = official
    root, _ = arc_split
    ours = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(**kwargs))
    frames_by_token, _ = dataloader.filter_scenes(
        root / "navsim_logs" / "mini", dataclasses.SceneFilter(**kwargs)
    )
    assert sorted(ours.tokens) == sorted(frames_by_token)


def test_trajectories_ego_status_and_annotations_match_navsim(arc_split, official, monkeypatch):
    dataloader, dataclasses = official
    root, _ = arc_split
    # The reference needs nuPlan map files only to attach a map; the poses do not depend on it.
    monkeypatch.setattr(dataclasses.Scene, "_build_map_api", classmethod(lambda cls, name: None))
    ours = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(frame_interval=1, has_route=False))
    frames_by_token, _ = dataloader.filter_scenes(
        root / "navsim_logs" / "mini", dataclasses.SceneFilter(frame_interval=1, has_route=False)
    )
    sensors = dataclasses.SensorConfig.build_no_sensors()
    for token in ours.tokens:
        mine = ours.get_scene(token)
        ref = dataclasses.Scene.from_scene_dict_list(
            frames_by_token[token], root / "sensor_blobs" / "mini", 4, 10, sensors
        )
        np.testing.assert_allclose(
            mine.get_future_trajectory(10), ref.get_future_trajectory().poses, atol=1e-5
        )
        np.testing.assert_allclose(
            mine.get_history_trajectory(), ref.get_history_trajectory().poses, atol=1e-5
        )
        assert mine.metadata.initial_token == ref.scene_metadata.initial_token
        assert mine.metadata.log_name == ref.scene_metadata.log_name
        for f_mine, f_ref in zip(mine.frames, ref.frames, strict=True):
            assert f_mine.token == f_ref.token and f_mine.timestamp == f_ref.timestamp
            assert f_mine.roadblock_ids == list(f_ref.roadblock_ids)
            np.testing.assert_allclose(f_mine.ego_status.ego_pose, f_ref.ego_status.ego_pose, atol=1e-6)
            np.testing.assert_allclose(f_mine.ego_status.ego_velocity, f_ref.ego_status.ego_velocity)
            np.testing.assert_allclose(f_mine.ego_status.ego_acceleration, f_ref.ego_status.ego_acceleration)
            np.testing.assert_array_equal(f_mine.ego_status.driving_command, f_ref.ego_status.driving_command)
            np.testing.assert_allclose(f_mine.annotations.boxes, f_ref.annotations.boxes)
            assert f_mine.annotations.track_tokens == list(f_ref.annotations.track_tokens)
        ref_input = ref.get_agent_input()
        mine_input = mine.get_agent_input()
        for s_mine, s_ref in zip(mine_input.ego_statuses, ref_input.ego_statuses, strict=True):
            np.testing.assert_allclose(s_mine.ego_pose, s_ref.ego_pose, atol=1e-5)
            assert s_mine.in_global_frame == s_ref.in_global_frame


def test_cameras_match_navsim(arc_split, official, monkeypatch):
    dataloader, dataclasses = official
    root, logs = arc_split
    monkeypatch.setattr(dataclasses.Scene, "_build_map_api", classmethod(lambda cls, name: None))
    log_c = logs[2].log_name  # the log with images on disk
    ours = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(log_names=[log_c]))
    frames_by_token, _ = dataloader.filter_scenes(
        root / "navsim_logs" / "mini", dataclasses.SceneFilter(log_names=[log_c])
    )
    sensors = dataclasses.SensorConfig(
        cam_f0=True,
        cam_l0=False,
        cam_l1=[3],
        cam_l2=False,
        cam_r0=False,
        cam_r1=False,
        cam_r2=False,
        cam_b0=True,
        lidar_pc=False,
    )
    (token,) = ours.tokens
    ref = dataclasses.Scene.from_scene_dict_list(
        frames_by_token[token], root / "sensor_blobs" / "mini", 4, 10, sensors
    )
    mine = ours.get_scene(token)
    for i in range(4):
        for name in ("cam_f0", "cam_l1", "cam_b0"):
            r, m = getattr(ref.frames[i].cameras, name), getattr(mine.frames[i].cameras, name)
            if r.image is None:
                continue
            np.testing.assert_array_equal(m.image, r.image)
            np.testing.assert_allclose(m.intrinsics, r.intrinsics)
            np.testing.assert_allclose(m.sensor2lidar_rotation, r.sensor2lidar_rotation)
            np.testing.assert_allclose(m.sensor2lidar_translation, r.sensor2lidar_translation)
    assert ref.frames[3].cameras.cam_l1.image is not None
