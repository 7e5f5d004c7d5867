"""The official navsim reader loads synthetic logs: same scenes, poses, boxes and camera images."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_adapter.geometry import global_to_local

pytestmark = pytest.mark.navsim

navsim_loader = pytest.importorskip(
    "navsim.common.dataloader", reason="official navsim not installed (make install-navsim)"
)
navsim_dc = pytest.importorskip("navsim.common.dataclasses")


def test_official_reader_loads_synthetic_split(synthetic_split, monkeypatch):
    # attaching a nuPlan map needs GeoPackage files; poses, boxes and images do not depend on it
    monkeypatch.setattr(navsim_dc.Scene, "_build_map_api", classmethod(lambda cls, name: None))
    root, split = synthetic_split.root, synthetic_split.split
    frames_by_token, _ = navsim_loader.filter_scenes(root / "navsim_logs" / split, navsim_dc.SceneFilter())
    assert len(frames_by_token) == len(synthetic_split.logs)  # 20 frames: one 14-frame scene per log
    truth = {p.stem: synthetic_split.truth(p) for p in synthetic_split.logs}
    sensors = navsim_dc.SensorConfig(
        cam_f0=True,
        cam_l0=True,
        cam_l1=False,
        cam_l2=False,
        cam_r0=True,
        cam_r1=False,
        cam_r2=False,
        cam_b0=False,
        lidar_pc=False,
    )
    for token, frames in frames_by_token.items():
        scene = navsim_dc.Scene.from_scene_dict_list(frames, root / "sensor_blobs" / split, 4, 10, sensors)
        t = truth[scene.scene_metadata.log_name]
        k = t["frame_tokens"].index(token)
        poses = np.array(t["ego_poses_global"])
        np.testing.assert_allclose(
            scene.get_future_trajectory(8).poses, global_to_local(poses[k + 1 : k + 9], poses[k]), atol=1e-4
        )
        cams = scene.get_agent_input().cameras[-1]
        width, height = synthetic_split.image_size
        for cam in (cams.cam_f0, cams.cam_l0, cams.cam_r0):
            assert cam.image.shape == (height, width, 3)
            np.testing.assert_allclose(cam.intrinsics[0, 2], width / 2)
        ann = scene.frames[3].annotations
        assert ann.boxes.shape[1] == 7 and len(ann.names) == len(ann.boxes)
