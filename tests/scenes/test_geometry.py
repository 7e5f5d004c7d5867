"""geometry.py against independent references: scipy rotations, homogeneous matrices, shapely."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from navsim_adapter.geometry import (
    global_to_local,
    local_to_global,
    quaternion_to_yaw,
    wrap_angle,
    yaw_to_quaternion,
)

rng = np.random.default_rng(0)


def se2_matrix(pose):
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.array([[c, -s, pose[0]], [s, c, pose[1]], [0, 0, 1]])


def test_quaternion_yaw_is_the_extrinsic_zyx_angle_for_tilted_unnormalised_quaternions():
    eulers = np.column_stack(
        [rng.uniform(-np.pi, np.pi, 200), rng.uniform(-0.4, 0.4, 200), rng.uniform(-0.4, 0.4, 200)]
    )
    quats = Rotation.from_euler("zyx", eulers).as_quat(scalar_first=True) * rng.uniform(0.5, 3.0, (200, 1))
    np.testing.assert_allclose(quaternion_to_yaw(quats), eulers[:, 0], atol=1e-12)
    assert quaternion_to_yaw(quats.reshape(20, 10, 4)).shape == (20, 10)
    # level vehicles: the same as the intrinsic z-y'-x'' yaw
    level = Rotation.from_euler("ZYX", np.column_stack([eulers[:, 0], 0 * eulers[:, :2]])).as_quat(
        scalar_first=True
    )
    np.testing.assert_allclose(quaternion_to_yaw(level), eulers[:, 0], atol=1e-12)


def test_quaternion_yaw_equals_pyquaternion_as_navsim_reads_it():
    pyquaternion = pytest.importorskip("pyquaternion", reason="pyquaternion comes with the navsim extra")
    quats = Rotation.random(100, random_state=1).as_quat(scalar_first=True)
    expected = [pyquaternion.Quaternion(*q).yaw_pitch_roll[0] for q in quats]
    np.testing.assert_allclose(quaternion_to_yaw(quats), expected, atol=1e-12)


def test_yaw_to_quaternion_inverts_yaw():
    yaws = rng.uniform(-np.pi, np.pi, 50)
    np.testing.assert_allclose(quaternion_to_yaw(yaw_to_quaternion(yaws)), yaws, atol=1e-12)
    with pytest.raises(ValueError, match="last dimension 4"):
        quaternion_to_yaw(np.zeros((3, 3)))


def test_wrap_angle_range_and_equivalence():
    angles = rng.uniform(-20, 20, 1000)
    wrapped = wrap_angle(angles)
    assert wrapped.min() >= -np.pi and wrapped.max() < np.pi
    np.testing.assert_allclose(np.cos(wrapped), np.cos(angles), atol=1e-9)
    np.testing.assert_allclose(np.sin(wrapped), np.sin(angles), atol=1e-9)


def test_global_to_local_matches_homogeneous_matrices_and_round_trips():
    origin = np.array([664_123.4, 3_997_654.3, 2.9])
    poses = np.column_stack(
        [
            origin[0] + rng.normal(0, 50, 100),
            origin[1] + rng.normal(0, 50, 100),
            rng.uniform(-np.pi, np.pi, 100),
        ]
    )
    local = global_to_local(poses, origin)
    inv = np.linalg.inv(se2_matrix(origin))
    for pose, loc in zip(poses, local, strict=True):
        rel = inv @ se2_matrix(pose)
        np.testing.assert_allclose(loc[:2], rel[:2, 2], atol=1e-6)
        np.testing.assert_allclose(loc[2], np.arctan2(rel[1, 0], rel[0, 0]), atol=1e-9)
    np.testing.assert_allclose(local_to_global(local, origin), poses, atol=1e-6)
    np.testing.assert_allclose(global_to_local(poses[:, :2], origin), local[:, :2], atol=1e-9)  # points
    np.testing.assert_allclose(global_to_local(origin, origin), 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="last dimension"):
        global_to_local(np.zeros((4, 5)), origin)
