"""Two-stage (navhard-format) splits without navsim: what the writer stores is what the reader returns,
the second stage is the log 4 s later with the ego displaced, and bad files are named in the error."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from navsim_adapter.evaluation import two_stage as ts
from navsim_adapter.scene_loader import SceneFilter, SceneLoader


@pytest.fixture(scope="module")
def written(synthetic_root, tmp_path_factory):
    return ts.write_two_stage_split(synthetic_root, "test", tmp_path_factory.mktemp("two_stage"))


def test_split_yaml_maps_each_stage_one_pair_to_displaced_scenes_four_seconds_later(written, synthetic_root):
    loader = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1))
    assert len(written.mapping) == 2  # one group per log
    scenes = ts.load_scenes(written, synthetic_root)
    for now, prev, pairs in written.mapping:
        assert len(pairs) == len(ts.OFFSETS) and all(len(t) == 17 for p in pairs for t in p)
        for first, k in ((now, 0), (prev, 1)):
            base = loader.get_scene(first)
            later = loader.tokens[loader.tokens.index(first) + ts.DELAY_FRAMES]
            for pair, offset in zip(pairs, ts.OFFSETS, strict=True):
                scene = scenes[pair[k]]
                assert (
                    scene.token == later + pair[k][-1] and scene.metadata.log_name == base.metadata.log_name
                )
                assert scene.current_frame.timestamp - base.current_frame.timestamp == 4_000_000
                original = loader.get_scene(later)
                x, y, yaw = original.current_frame.ego_status.ego_pose
                moved = scene.current_frame.ego_status.ego_pose
                np.testing.assert_allclose(moved, [x - offset * np.sin(yaw), y + offset * np.cos(yaw), yaw])
                # other agents stay where they were in the world: their local y shifts by the offset
                np.testing.assert_allclose(
                    scene.current_frame.annotations.boxes[:, 1],
                    original.current_frame.annotations.boxes[:, 1] - offset,
                )


def test_synthetic_scene_pickle_round_trips(written, synthetic_root):
    token = written.stage_two[0]
    sensor_root = synthetic_root / "sensor_blobs" / "test"
    scene = ts.read_synthetic_scene(written.scenes_path / f"{token}.pkl", sensor_root, synthetic_root)
    again = ts.scene_to_dict(scene, sensor_root)
    with (written.scenes_path / f"{token}.pkl").open("rb") as f:
        stored = pickle.load(f)
    assert [f["token"] for f in again["frames"]] == [f["token"] for f in stored["frames"]]
    for a, b in zip(again["frames"], stored["frames"], strict=True):
        np.testing.assert_array_equal(a["ego_status"]["ego_pose"], b["ego_status"]["ego_pose"])
        np.testing.assert_array_equal(a["annotations"]["boxes"], b["annotations"]["boxes"])
        assert a["camera_dict"]["cam_f0"]["data_path"] == b["camera_dict"]["cam_f0"]["data_path"]
    assert scene.frames[3].cameras.cam_f0.image.shape[2] == 3  # its camera file resolves


def test_bad_files_are_named(written, tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"frames": []}))
    with pytest.raises(ValueError, match=r"bad\.pkl: not a navsim synthetic scene.*scene_metadata"):
        ts.read_synthetic_scene(bad, tmp_path)
    config = tmp_path / "split.yaml"
    config.write_text("data_split: test\n")
    with pytest.raises(ValueError, match=r"split\.yaml: expected data_split and reactive_all_mapping"):
        ts.TwoStageSplit.load(config, written.scenes_path)
