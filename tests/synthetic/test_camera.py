"""Pinhole projection: known 3-D points land on the expected pixels, in the spec and in rendered images."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.world.camera import RIG_YAW_DEG, make_camera, project_points
from data_prep.world.render import VEHICLE_PALETTE, SceneRenderer, clip_near
from data_prep.world.road import RoadNetwork


def test_point_on_optical_axis_projects_to_principal_point():
    for name, yaw_deg in RIG_YAW_DEG.items():
        cam = make_camera(name, 256, 144)
        yaw = np.deg2rad(yaw_deg)
        point = cam.translation + 12.0 * np.array([np.cos(yaw), np.sin(yaw), 0.0])
        uv, depth = project_points(point[None], cam.intrinsics, cam.rotation, cam.translation)
        np.testing.assert_allclose(uv[0], [128.0, 72.0], atol=1e-9)
        assert depth[0] == pytest.approx(12.0)


def test_offset_point_projects_by_focal_length_ratio():
    cam = make_camera("CAM_F0", 320, 180, hfov_deg=90.0)
    f = 160.0  # (width / 2) / tan(45 deg)
    np.testing.assert_allclose(cam.intrinsics, [[f, 0, 160], [0, f, 90], [0, 0, 1]])
    # 10 m ahead, 2 m to the right (ego y = -2) and 1 m above the camera
    point = cam.translation + np.array([10.0, -2.0, 1.0])
    uv, _ = project_points(point[None], cam.intrinsics, cam.rotation, cam.translation)
    np.testing.assert_allclose(uv[0], [160 + f * 2 / 10, 90 - f * 1 / 10], atol=1e-9)


def test_left_camera_sees_points_on_the_left_and_behind_is_nan():
    cam = make_camera("CAM_L0", 256, 144)
    ahead_left = cam.translation + np.array([5.0, 8.0, 0.0])
    behind = cam.translation + np.array([-5.0, -8.0, 0.0])
    uv, depth = project_points(np.stack([ahead_left, behind]), cam.intrinsics, cam.rotation, cam.translation)
    assert depth[0] > 0 and 0 <= uv[0, 0] < 256
    assert depth[1] < 0 and np.isnan(uv[1]).all()


def test_clip_near_keeps_the_visible_part():
    square = np.array([[-1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, 3.0], [-1.0, 0.0, 3.0]])
    clipped = clip_near(square, near=1.0)
    assert clipped[:, 2].min() == pytest.approx(1.0)
    assert sorted(map(tuple, clipped.round(6))) == sorted(
        [(1.0, 0.0, 1.0), (1.0, 0.0, 3.0), (-1.0, 0.0, 3.0), (-1.0, 0.0, 1.0)]
    )
    assert len(clip_near(square - [0, 0, 10], near=1.0)) == 0


def test_rendered_box_covers_its_projected_centre():
    """A vehicle drawn by the renderer appears at the pixel the projection predicts."""
    cam = make_camera("CAM_F0", 200, 120)
    box = np.array([[15.0, 1.5, 0.8, 4.5, 1.9, 1.6, 0.0]])  # world frame == ego frame (ego at origin)
    image = SceneRenderer(RoadNetwork()).render(np.zeros(3), box, ["vehicle"], ["car-1"], 0.0, [cam])[
        "CAM_F0"
    ]
    rear_face_centre = np.array([[15.0 - 2.25, 1.5, 0.8]])
    uv, _ = project_points(rear_face_centre, cam.intrinsics, cam.rotation, cam.translation)
    u, v = np.round(uv[0]).astype(int)
    pixel = np.asarray(image)[v, u].astype(int)
    shaded = [np.clip(np.array(c) * 0.6, 0, 255).astype(int) for c in VEHICLE_PALETTE]  # rear face shade
    assert min(np.abs(pixel - c).max() for c in shaded) <= 1, pixel
    # and the sky is above the horizon line, away from the box
    assert tuple(np.asarray(image)[5, 5]) != tuple(pixel)
