"""Synthetic OpenScene logs round-trip through SceneLoader with NAVSIM's frame conventions."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from navsim_adapter.paths import DataPathError
from navsim_adapter.scene import CAMERA_NAMES
from navsim_adapter.scene_loader import EmptySplitError, MalformedLogError, SceneFilter, SceneLoader


def expected_tokens(logs, hist=4, fut=10, interval=None, has_route=True):
    """Scene tokens enumerated straight from the written frame dicts (NAVSIM's windowing)."""
    n = hist + fut
    interval = interval or n
    out = []
    for log in logs:
        for start in range(0, len(log.frames) - n + 1, interval):
            cur = log.frames[start + hist - 1]
            if has_route and not cur["roadblock_ids"]:
                continue
            out.append(cur["token"])
    return out


def test_future_and_history_equal_the_driven_arc(arc_split):
    root, logs = arc_split
    loader = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(frame_interval=1, has_route=False))
    by_name = {log.log_name: log for log in logs}
    assert len(loader) == 17 + 17 + 3
    for scene in loader.iter_scenes():
        log = by_name[scene.metadata.log_name]
        k = [f["token"] for f in log.frames].index(scene.token)
        future = scene.get_future_trajectory()
        assert future.shape == (8, 3)
        truth = np.stack([log.local_pose(k + i, k) for i in range(1, 9)])
        np.testing.assert_allclose(future, truth, atol=1e-6)
        history = scene.get_history_trajectory()
        np.testing.assert_allclose(
            history, np.stack([log.local_pose(k + i, k) for i in range(-3, 1)]), atol=1e-6
        )
        np.testing.assert_allclose(scene.get_future_trajectory(10)[:8], future)


def test_scene_metadata_and_frame_fields_follow_openscene_keys(arc_split):
    root, logs = arc_split
    loader = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(frame_interval=1))
    log = logs[0]
    scene = loader.get_scene(log.frames[3]["token"])  # first window of log_a
    md = scene.metadata
    assert (md.log_name, md.map_name, md.initial_token) == (
        log.log_name,
        "synthetic-town",
        log.frames[3]["token"],
    )
    assert scene.current_frame.token == md.scene_token == log.frames[3]["token"]
    assert [f.token for f in scene.frames] == [f["token"] for f in log.frames[:14]]
    frame = scene.frames[5]
    raw = log.frames[5]
    assert frame.ego_status.in_global_frame
    np.testing.assert_allclose(frame.ego_status.ego_pose[:2], raw["ego2global_translation"][:2])
    np.testing.assert_allclose(
        np.cos(frame.ego_status.ego_pose[2] - (log.angles[5] + np.pi / 2)), 1.0, atol=1e-12
    )
    np.testing.assert_allclose(frame.ego_status.ego_velocity, [8.0, 0.0])
    np.testing.assert_allclose(frame.ego_status.ego_acceleration, [0.1, 0.2])
    np.testing.assert_array_equal(frame.ego_status.driving_command, [0, 1, 0, 0])
    assert frame.timestamp - scene.frames[4].timestamp == 500_000
    assert frame.roadblock_ids == ["rb1", "rb2"]
    assert frame.traffic_lights == [("1001", True), ("1002", False)]
    np.testing.assert_allclose(frame.annotations.boxes, raw["anns"]["gt_boxes"])
    assert frame.annotations.track_tokens == ["track0", "track1"] and len(frame.annotations) == 2
    assert frame.lidar_path == root / "sensor_blobs" / "mini" / raw["lidar_path"]
    np.testing.assert_allclose(frame.cameras.cam_l1.intrinsics, raw["cams"]["CAM_L1"]["cam_intrinsic"])
    np.testing.assert_allclose(frame.cameras.cam_b0.sensor2lidar_translation, [1.0, 0.0, 1.5])


def test_images_load_lazily_from_sensor_blobs(arc_split):
    root, logs = arc_split
    loader = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(log_names=[logs[2].log_name]))
    scene = loader.get_scene(loader.tokens[0])
    cam = scene.current_frame.cameras.cam_r2
    assert cam._image is None  # nothing read yet
    image = cam.image
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert image[0, 0, 1] == CAMERA_NAMES.index("cam_r2") * 30 and image[0, 0, 0] == (3 * 7) % 256
    # another scene of the same (cached) log does not share the loaded image
    assert (
        SceneLoader("mini", data_root=root, scene_filter=loader.scene_filter)
        .get_scene(scene.token)
        .current_frame.cameras.cam_r2._image
        is None
    )
    missing = (
        SceneLoader("mini", data_root=root)
        .get_scene(expected_tokens(logs[:1])[0])
        .current_frame.cameras.cam_f0
    )
    with pytest.raises(FileNotFoundError, match=r"CAM_F0/.*\.jpg"):
        _ = missing.image


def test_agent_input_is_relative_to_current_frame(arc_split):
    root, logs = arc_split
    loader = SceneLoader("mini", data_root=root)
    token = loader.tokens[0]
    scene = loader.get_scene(token)
    agent_input = loader.get_agent_input(token, cameras=("cam_f0", "cam_b0"))
    assert len(agent_input.ego_statuses) == len(agent_input.cameras) == 4
    np.testing.assert_allclose(agent_input.ego_statuses[-1].ego_pose, 0.0, atol=1e-9)
    np.testing.assert_allclose(
        np.stack([s.ego_pose for s in agent_input.ego_statuses]), scene.get_history_trajectory()
    )
    assert not any(s.in_global_frame for s in agent_input.ego_statuses)
    cams = agent_input.cameras[-1]
    assert (
        cams.cam_f0.camera_path is not None
        and cams.cam_b0.camera_path is not None
        and cams.cam_l0.camera_path is None
    )
    only_current = scene.get_agent_input(history_indices=[-1])
    assert [c.cam_f0.camera_path is not None for c in only_current.cameras] == [False, False, False, True]
    with pytest.raises(ValueError, match="unknown camera"):
        scene.get_agent_input(cameras=("CAM_F0",))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"frame_interval": 1},
        {"frame_interval": 1, "has_route": False},
        {"frame_interval": 3, "num_history_frames": 2, "num_future_frames": 6},
    ],
)
def test_windowing_and_has_route_select_navsim_scenes(arc_split, kwargs):
    root, logs = arc_split
    f = SceneFilter(**kwargs)
    loader = SceneLoader("mini", data_root=root, scene_filter=f)
    assert loader.tokens == expected_tokens(
        logs, f.num_history_frames, f.num_future_frames, f.frame_interval, f.has_route
    )


def test_log_names_tokens_and_max_scenes_filters(arc_split):
    root, logs = arc_split
    all_tokens = expected_tokens(logs, interval=1)
    by_log = SceneLoader(
        "mini", data_root=root, scene_filter=SceneFilter(frame_interval=1, log_names=[logs[1].log_name])
    )
    assert by_log.tokens == expected_tokens(logs[1:2], interval=1) and by_log.log_names == [logs[1].log_name]
    picked = [all_tokens[2], all_tokens[-1], "not-a-token"]
    by_token = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(frame_interval=1, tokens=picked))
    assert set(by_token.tokens) == set(picked[:2])
    capped = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(frame_interval=1, max_scenes=5))
    assert capped.tokens == all_tokens[:5]
    with pytest.raises(KeyError, match="not-a-token"):
        by_token.get_scene("not-a-token")


def test_data_root_comes_from_environment(arc_split, monkeypatch):
    root, _ = arc_split
    monkeypatch.setenv("OPENSCENE_DATA_ROOT", str(root))
    assert SceneLoader("mini").data_root == root
    monkeypatch.delenv("OPENSCENE_DATA_ROOT")
    with pytest.raises(DataPathError, match="OPENSCENE_DATA_ROOT"):
        SceneLoader("mini")


def test_empty_split_names_paths_and_filter(arc_split, tmp_path):
    root, _ = arc_split
    with pytest.raises(EmptySplitError) as err:
        SceneLoader("mini", data_root=root, scene_filter=SceneFilter(tokens=["nope"]))
    msg = str(err.value)
    assert str(root / "navsim_logs" / "mini") in msg and str(root / "sensor_blobs" / "mini") in msg
    assert "tokens=['nope']" in msg and "dropped by tokens: 3" in msg and "log pickles found: 3" in msg
    with pytest.raises(EmptySplitError, match=r"navsim_logs/trainval does not exist"):
        SceneLoader("trainval", data_root=root)
    (root / "navsim_logs" / "empty").mkdir()
    with pytest.raises(EmptySplitError, match="log pickles found: 0"):
        SceneLoader("empty", data_root=root)
    with pytest.raises(EmptySplitError, match="shorter than the 44 frames .* frames in longest log: 30"):
        SceneLoader("mini", data_root=root, scene_filter=SceneFilter(num_future_frames=40))
    with pytest.raises(EmptySplitError, match="logs kept by log_names: 0"):
        SceneLoader("mini", data_root=root, scene_filter=SceneFilter(log_names=["2099.missing"]))


def _rewrite(log, frames):
    with log.path.open("wb") as fh:
        pickle.dump(frames, fh)


def test_truncated_pickle_names_the_file(arc_log_factory):
    log = arc_log_factory()
    data = log.path.read_bytes()
    log.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MalformedLogError, match=rf"{log.path}: truncated or not a pickle"):
        SceneLoader("mini", data_root=log.path.parents[2])


@pytest.mark.parametrize(
    "corrupt, pattern",
    [
        (
            lambda f: f.pop("ego2global_rotation"),
            r"frame 7 \(token \w+\): key 'ego2global_rotation' is missing",
        ),
        (lambda f: f["anns"].pop("track_tokens"), r"frame 7 .*key 'anns.track_tokens' is missing"),
        (
            lambda f: f["anns"].update(gt_boxes=np.zeros((2, 6))),
            r"frame 7 .*'anns.gt_boxes' has shape \(2, 6\), expected \(N, 7\)",
        ),
        (
            lambda f: f.update(ego_dynamic_state=[1.0, 2.0]),
            r"frame 7 .*'ego_dynamic_state' has shape \(2,\), expected \(4,\)",
        ),
        (
            lambda f: f["cams"]["CAM_L2"].pop("cam_intrinsic"),
            r"frame 7 .*'cams.CAM_L2.cam_intrinsic' is missing",
        ),
        (
            lambda f: f["anns"].update(gt_names=["car"]),
            r"frame 7 .*'anns.gt_names' has 1 entries, expected 2",
        ),
        (
            lambda f: f.update(ego2global_translation=[np.nan, 0, 0]),
            r"frame 7 .*'ego2global_translation' contains NaN",
        ),
        (lambda f: f.update(traffic_lights=[(1, True, 3)]), r"frame 7 .*'traffic_lights' entry 0"),
    ],
)
def test_malformed_frame_names_file_frame_and_key(arc_log_factory, corrupt, pattern):
    log = arc_log_factory()
    corrupt(log.frames[7])
    _rewrite(log, log.frames)
    with pytest.raises(MalformedLogError, match=pattern) as err:
        SceneLoader("mini", data_root=log.path.parents[2])
    assert str(log.path) in str(err.value)


def test_pickle_of_wrong_type_is_rejected(arc_log_factory):
    log = arc_log_factory()
    _rewrite(log, {"frames": log.frames})
    with pytest.raises(MalformedLogError, match="holds a dict, expected a list of frame dicts"):
        SceneLoader("mini", data_root=log.path.parents[2])
    _rewrite(log, [*log.frames[:3], "oops"])
    with pytest.raises(MalformedLogError, match="frame 3: is a str, expected a dict"):
        SceneLoader("mini", data_root=log.path.parents[2])


def test_frames_without_agents_read_as_empty_annotations(arc_log_factory):
    log = arc_log_factory()
    for f in log.frames:
        f["anns"] = {
            "gt_boxes": np.zeros((0,)),
            "gt_names": [],
            "gt_velocity_3d": [],
            "instance_tokens": [],
            "track_tokens": [],
        }
    _rewrite(log, log.frames)
    scene = SceneLoader("mini", data_root=log.path.parents[2]).iter_scenes().__next__()
    assert scene.current_frame.annotations.boxes.shape == (0, 7) and len(scene.current_frame.annotations) == 0


def test_loader_pickles_for_worker_processes(arc_split):
    root, _ = arc_split
    loader = SceneLoader("mini", data_root=root, scene_filter=SceneFilter(frame_interval=1))
    clone = pickle.loads(pickle.dumps(loader))
    assert clone.tokens == loader.tokens
    token = loader.tokens[-1]
    np.testing.assert_array_equal(
        clone.get_scene(token).get_future_trajectory(), loader.get_scene(token).get_future_trajectory()
    )
