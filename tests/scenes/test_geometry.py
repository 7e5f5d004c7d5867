"""geometry.py (the one SE(2) module) against independent references: scipy rotations, homogeneous
matrices, known rotations and round trips."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from navsim_adapter.geometry import (
    global_to_local,
    local_to_global,
    normalize_angle,
    quaternion_to_yaw,
    rotate,
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


def test_normalize_angle_is_atan2_closed_range_and_differs_from_wrap_only_at_the_seam():
    angles = np.concatenate([rng.uniform(-20, 20, 1000), [np.pi, -np.pi, 3 * np.pi, 0.0]])
    norm = normalize_angle(angles)
    assert norm.min() >= -np.pi and norm.max() <= np.pi
    np.testing.assert_allclose(np.cos(norm), np.cos(angles), atol=1e-9)
    np.testing.assert_allclose(np.sin(norm), np.sin(angles), atol=1e-9)
    # same angle away from +-pi; at +pi NAVSIM's atan2 keeps pi where the modulo wraps to -pi
    inside = np.abs(np.abs(norm) - np.pi) > 1e-6
    np.testing.assert_allclose(norm[inside], wrap_angle(angles[inside]), atol=1e-12)
    assert normalize_angle(np.pi) == np.pi and wrap_angle(np.pi) == -np.pi
    np.testing.assert_allclose(normalize_angle(1.5 * np.pi), -0.5 * np.pi, atol=1e-15)
    np.testing.assert_allclose(wrap_angle(-1.5 * np.pi), 0.5 * np.pi, atol=1e-15)


def test_rotate_is_a_counter_clockwise_rotation_and_round_trips():
    np.testing.assert_allclose(rotate(np.array([1.0, 0.0]), np.pi / 2), [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(rotate(np.array([0.0, 2.0]), np.pi / 2), [-2.0, 0.0], atol=1e-15)
    vectors, angles = rng.normal(size=(50, 2)), rng.uniform(-np.pi, np.pi, 50)
    expected = Rotation.from_euler("z", angles[:, None]).apply(np.column_stack([vectors, np.zeros(50)]))[
        :, :2
    ]
    np.testing.assert_allclose(rotate(vectors, angles), expected, atol=1e-12)  # one angle per row
    np.testing.assert_allclose(rotate(rotate(vectors, 0.7), -0.7), vectors, atol=1e-12)
    # a vector has no position: rotating it is the frame change of a point about the origin (0, 0)
    frame = np.array([0.0, 0.0, 0.7])
    np.testing.assert_allclose(rotate(vectors, -0.7), global_to_local(vectors, frame), atol=1e-12)
    with pytest.raises(ValueError, match="last dimension 2"):
        rotate(np.zeros((4, 3)), 0.1)


def test_frame_change_of_a_known_pose_and_batched_origins():
    origin = np.array([1.0, 2.0, np.pi / 2])  # at (1, 2) facing +y: +y is ahead, -x is left
    np.testing.assert_allclose(
        global_to_local(np.array([1.0, 3.0, np.pi]), origin), [1.0, 0.0, np.pi / 2], atol=1e-15
    )
    np.testing.assert_allclose(global_to_local(np.array([0.0, 2.0]), origin), [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(
        local_to_global(np.array([1.0, 0.0, 0.0]), origin), [1.0, 3.0, np.pi / 2], atol=1e-15
    )
    # one origin per row ([B, 1, 3] against [B, N, 3]) is the per-row call, for either wrap
    origins = np.column_stack([rng.normal(0, 100, (4, 2)), rng.uniform(-np.pi, np.pi, 4)])
    poses = np.concatenate([rng.normal(0, 20, (4, 5, 2)), rng.uniform(-np.pi, np.pi, (4, 5, 1))], -1)
    for wrap in (wrap_angle, normalize_angle):
        batched = local_to_global(poses, origins[:, None], wrap=wrap)
        for b in range(4):
            np.testing.assert_array_equal(batched[b], local_to_global(poses[b], origins[b], wrap=wrap))
            np.testing.assert_allclose(
                global_to_local(batched[b], origins[b], wrap=wrap), poses[b], atol=1e-9
            )
    assert np.all(np.abs(local_to_global(poses, origins[:, None], wrap=normalize_angle)[..., 2]) <= np.pi)
    with pytest.raises(ValueError, match="origin must have last dimension 3"):
        local_to_global(poses, origins[:, :2])
