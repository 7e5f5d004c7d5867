"""Arc-length polylines: exact arcs, right-angle turns, projection and interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.world.paths import Path, arc_poses, turn_poses


def test_quarter_circle_ends_where_geometry_says():
    radius = 20.0
    poses = arc_poses((5.0, -3.0, 0.0), [(radius * np.pi / 2, 1.0 / radius)], step=0.5)
    np.testing.assert_allclose(poses[-1], [5.0 + radius, -3.0 + radius, np.pi / 2], atol=1e-9)
    centre = np.array([5.0, -3.0 + radius])
    np.testing.assert_allclose(np.linalg.norm(poses[:, :2] - centre, axis=1), radius, atol=1e-9)


@pytest.mark.parametrize("end", [(12.0, 9.0, np.pi / 2), (12.0, -7.0, -np.pi / 2)])
def test_right_angle_turn_meets_the_end_pose_with_bounded_curvature(end):
    start = np.array([0.0, 0.0, 0.0])
    poses = turn_poses(start, np.array(end))
    np.testing.assert_allclose(poses[-1], end, atol=1e-9)
    path = Path(poses)
    radius = min(end[0], abs(end[1]))
    assert np.abs(path.kappa).max() == pytest.approx(1.0 / radius, rel=2e-3)
    with pytest.raises(ValueError):
        turn_poses(start, np.array([-5.0, 5.0, np.pi / 2]))


def test_project_and_at_on_a_straight_path():
    path = Path(np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 0.0]]))
    s, lateral = path.project(np.array([[3.0, 2.0], [15.0, -1.5], [25.0, 0.0]]))
    np.testing.assert_allclose(s, [3.0, 15.0, 20.0])
    np.testing.assert_allclose(lateral, [2.0, -1.5, 0.0])  # beyond the end: clamped to the last point
    np.testing.assert_allclose(path.at(np.array([5.0, 23.0])), [[5.0, 0.0, 0.0], [23.0, 0.0, 0.0]])
    np.testing.assert_allclose(path.offset(1.0)[:, 1], 1.0)
    back = path.reversed()
    np.testing.assert_allclose(back.at(0.0), [20.0, 0.0, np.pi - 2 * np.pi], atol=1e-9)


def test_concat_drops_the_shared_joint():
    a = Path(arc_poses((0.0, 0.0, 0.0), [(10.0, 0.0)]))
    b = Path(arc_poses((10.0, 0.0, 0.0), [(5.0, 0.0)]))
    joined = Path.concat([a, b])
    assert joined.length == pytest.approx(15.0)
    assert np.all(np.diff(joined.s) > 0)
