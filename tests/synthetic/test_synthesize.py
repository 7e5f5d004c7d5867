"""The generator writes OpenScene-format logs, images, maps and ground truth, deterministically."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from PIL import Image

from data_prep.synthesize import main, synthesize
from data_prep.world.camera import RIG_YAW_DEG, project_points
from data_prep.world.render import COLORS, SKY
from data_prep.world.scenarios import FAMILIES
from navsim_adapter.geometry import global_to_local, quaternion_to_yaw

FRAME_KEYS = {
    "token",
    "timestamp",
    "log_name",
    "map_location",
    "roadblock_ids",
    "traffic_lights",
    "ego2global_translation",
    "ego2global_rotation",
    "ego_dynamic_state",
    "driving_command",
    "lidar_path",
    "cams",
    "anns",
    "scene_token",
}
NAVSIM_CLASSES = {
    "vehicle",
    "pedestrian",
    "bicycle",
    "traffic_cone",
    "barrier",
    "czone_sign",
    "generic_object",
}


def _load(path):
    with open(path, "rb") as fh:
        return pickle.load(fh)


def test_layout_and_every_family(synthetic_split):
    root, split = synthetic_split.root, synthetic_split.split
    assert len(synthetic_split.logs) == len(FAMILIES)
    families = set()
    for log in synthetic_split.logs:
        assert log.parent == root / "navsim_logs" / split
        truth = synthetic_split.truth(log)
        families.add(truth["family"])
        assert (root / "synthetic_maps" / f"{truth['map_name']}.json").is_file()
        for frame in _load(log):
            assert set(frame["cams"]) == set(RIG_YAW_DEG)  # all eight, as in OpenScene
            for cam, entry in frame["cams"].items():
                assert entry["data_path"].startswith(f"{log.stem}/{cam}/")
                rendered = (root / "sensor_blobs" / split / entry["data_path"]).is_file()
                assert rendered == (cam in synthetic_split.cameras), cam
    assert families == set(FAMILIES)


def test_frame_dicts_follow_openscene(synthetic_split):
    tokens = set()
    for log in synthetic_split.logs:
        frames, truth = _load(log), synthetic_split.truth(log)
        assert isinstance(frames, list) and len(frames) == 20
        ts = np.array([f["timestamp"] for f in frames])
        assert np.all(np.diff(ts) == 500_000) and ts[0] > 10**15  # microseconds at 2 Hz
        poses = np.array(truth["ego_poses_global"])
        for f, pose in zip(frames, poses, strict=True):
            assert FRAME_KEYS <= set(f)
            assert re.fullmatch(r"[0-9a-f]{16}", f["token"]) and f["token"] not in tokens
            tokens.add(f["token"])
            assert f["log_name"] == log.stem and f["map_location"] == truth["map_name"]
            assert f["roadblock_ids"] == truth["route_roadblock_ids"] and f["roadblock_ids"]
            np.testing.assert_allclose(f["ego2global_translation"][:2], pose[:2])
            assert np.linalg.norm(f["ego2global_rotation"]) == pytest.approx(1.0)
            assert quaternion_to_yaw(f["ego2global_rotation"]) == pytest.approx(pose[2], abs=1e-9)
            assert f["ego_dynamic_state"].shape == (4,) and f["driving_command"].sum() == 1
            anns = f["anns"]
            n = len(anns["gt_boxes"])
            assert anns["gt_boxes"].shape == (n, 7) and anns["gt_velocity_3d"].shape == (n, 3)
            assert len(anns["gt_names"]) == len(anns["instance_tokens"]) == len(anns["track_tokens"]) == n
            assert set(anns["gt_names"]) <= NAVSIM_CLASSES
            for cid, red in f["traffic_lights"]:
                assert isinstance(cid, str) and isinstance(red, bool)


def test_boxes_and_velocities_are_in_the_ego_frame(synthetic_split):
    """A static object's box is fixed in the world: moving it back to global gives one place every frame."""
    log = next(p for p in synthetic_split.logs if "stopped_obstacle" in p.stem)
    frames = _load(log)
    positions = {}
    for f in frames:
        pose = np.array([*f["ego2global_translation"][:2], quaternion_to_yaw(f["ego2global_rotation"])])
        for box, track, vel in zip(
            f["anns"]["gt_boxes"], f["anns"]["track_tokens"], f["anns"]["gt_velocity_3d"], strict=True
        ):
            if np.linalg.norm(vel) < 1e-9:
                c, s = np.cos(pose[2]), np.sin(pose[2])
                positions.setdefault(track, []).append(
                    pose[:2] + [c * box[0] - s * box[1], s * box[0] + c * box[1]]
                )
    assert positions
    for track, xy in positions.items():
        assert np.ptp(np.array(xy), axis=0).max() < 1e-6, track


def test_speed_matches_driven_poses(synthetic_split):
    for log in synthetic_split.logs:
        frames = _load(log)
        xy = np.array([f["ego2global_translation"][:2] for f in frames])
        speed = np.array([f["ego_dynamic_state"][0] for f in frames])
        step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        # distance over 0.5 s lies between the speeds at both ends (within accel bounds)
        mean = 0.5 * (speed[:-1] + speed[1:]) * 0.5
        assert np.abs(step - mean).max() < 0.35


def test_images_show_road_ahead_and_sky_above(synthetic_split):
    """Project points with the log's own camera calibration into the saved JPEGs."""
    root, split = synthetic_split.root, synthetic_split.split
    log = next(p for p in synthetic_split.logs if "lane_follow_straight" in p.stem)
    frame = _load(log)[3]
    cam = frame["cams"]["CAM_F0"]
    image = np.asarray(Image.open(root / "sensor_blobs" / split / cam["data_path"]).convert("RGB")).astype(
        int
    )
    assert image.shape == (54, 96, 3)
    road_point = np.array([[9.0, 0.0, 0.0]])  # on the ego's lane, 9 m ahead of the rear axle
    sky_point = np.array([[200.0, 0.0, 60.0]])
    (road_uv, sky_uv), _ = project_points(
        np.concatenate([road_point, sky_point]),
        cam["cam_intrinsic"],
        cam["sensor2lidar_rotation"],
        cam["sensor2lidar_translation"],
    )
    ru, rv = np.round(road_uv).astype(int)
    su, sv = np.round(sky_uv).astype(int)
    assert np.abs(image[rv, ru] - COLORS["road"]).max() < 30
    assert np.abs(image[sv, su] - SKY).max() < 30


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    kwargs = dict(
        frames_per_log=4,
        image_size=(48, 27),
        cameras=("CAM_F0",),
        families=("red_light", "pedestrian_crossing"),
        progress=False,
    )
    a = synthesize(tmp_path / "a", "det", 2, seed=3, workers=1, **kwargs)
    b = synthesize(tmp_path / "b", "det", 2, seed=3, workers=2, **kwargs)
    c = synthesize(tmp_path / "c", "det", 2, seed=4, workers=1, **kwargs)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and any(p.suffix == ".jpg" for p in files_a)
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert a[0].read_bytes() != c[0].read_bytes()
    assert [p.name for p in a] == [p.name for p in b]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="../x"), "split"),
        (dict(cameras=("CAM_X9",)), "CAM_X9"),
        (dict(frames_per_log=1), "frames_per_log"),
        (dict(families=("flying",)), "flying"),
        (dict(driver_noise=-1.0), "driver_noise"),
    ],
)
def test_bad_options_are_named(tmp_path, kwargs, message):
    args = dict(out=tmp_path, split="ok", num_logs=1, seed=0) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        synthesize(**args)


def test_cli_writes_a_split(tmp_path, capsys):
    main(
        [
            "--out",
            str(tmp_path),
            "--split",
            "cli",
            "--logs",
            "1",
            "--seed",
            "2",
            "--frames",
            "3",
            "--image-size",
            "32x18",
            "--cameras",
            "CAM_F0,CAM_B0",
            "--driver-noise",
            "0.5",
            "--workers",
            "1",
        ]
    )
    logs = list((tmp_path / "navsim_logs" / "cli").glob("*.pkl"))
    assert len(logs) == 1 and "wrote 1 logs" in capsys.readouterr().out
    frame = _load(logs[0])[0]
    rendered = {
        cam
        for cam in frame["cams"]
        if (tmp_path / "sensor_blobs" / "cli" / frame["cams"][cam]["data_path"]).is_file()
    }
    assert rendered == {"CAM_F0", "CAM_B0"}
    with Image.open(tmp_path / "sensor_blobs" / "cli" / frame["cams"]["CAM_B0"]["data_path"]) as img:
        assert img.size == (32, 18)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--split", "cli", "--logs", "1", "--image-size", "big"])


def test_ground_truth_matches_local_trajectories(synthetic_split):
    log = synthetic_split.logs[0]
    frames, truth = _load(log), synthetic_split.truth(log)
    poses = np.array(truth["ego_poses_global"])
    local = global_to_local(poses[4:12], poses[3])
    assert local[-1, 0] > 0  # driving forward
    assert truth["frame_tokens"] == [f["token"] for f in frames]
