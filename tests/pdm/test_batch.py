"""Scenes scored side by side (SceneBatch padding, geometry chunks) give exactly the per-scene numbers,
on any CPU: no step's summation order depends on the batch shape (no GEMM over the row axis), and the
batched geometry primitives agree with shapely."""

from __future__ import annotations

import dataclasses

import numpy as np
import shapely
from shapely.geometry import LineString, box

from navsim_adapter.pdm import PDMResult, score
from navsim_adapter.pdm import scorer as scorer_module
from navsim_adapter.pdm.geometry import PolygonSet, PolygonTable, polyline_farther_than
from navsim_adapter.pdm.metrics import _savgol_operator
from navsim_adapter.pdm.simulation import _velocity_fit_operator, interpolate_candidates, rows_times
from tests.pdm.toy_road import toy_candidates, toy_context


def _mixed_contexts():
    """Scenes that differ in every padded dimension: agent steps (41 / 51), agent count (0 .. 6),
    red lights (none / one), centreline length, history, human trajectory, synthetic flag."""
    out = []
    for seed in range(8):
        c = toy_context(seed)
        if seed % 4 == 0:  # agents and red lights only for the 41 simulated steps
            c = dataclasses.replace(
                c,
                agent_boxes=c.agent_boxes[:41],
                agent_velocity=c.agent_velocity[:41],
                agent_valid=c.agent_valid[:41],
                red_light_active=c.red_light_active[:41],
            )
        if seed % 4 == 1:
            c = dataclasses.replace(
                c, past_states=None, human_trajectory=None, centerline=c.centerline[40:200]
            )
        if seed % 4 == 2:
            c = dataclasses.replace(
                c,
                agent_tokens=[],
                agent_types=[],
                agent_boxes=np.zeros((51, 0, 5)),
                agent_velocity=np.zeros((51, 0, 2)),
                agent_valid=np.zeros((51, 0), dtype=bool),
                red_light_ids=[],
                red_light_polygons=[],
                red_light_active=None,
            )
        if seed % 4 == 3:
            c = dataclasses.replace(c, is_synthetic=True, past_states=c.past_states[:6])
        out.append(c)
    return out


def test_batch_equals_scenes_scored_alone(monkeypatch):
    ctxs = _mixed_contexts()
    traj = np.stack([toy_candidates(c, 6, s) for s, c in enumerate(ctxs)])
    together = score(ctxs, traj)
    # Tiny geometry chunks: every scene in its own pass must not change anything either.
    monkeypatch.setattr(scorer_module, "GEOM_CHUNK", 1)
    chunked = score(ctxs, traj)
    for i, ctx in enumerate(ctxs):
        alone = score([ctx], traj[i : i + 1])
        for name in PDMResult.SUBSCORES + ("progress",):
            np.testing.assert_array_equal(getattr(together, name)[i], getattr(alone, name)[0], err_msg=name)
            np.testing.assert_array_equal(getattr(chunked, name)[i], getattr(alone, name)[0], err_msg=name)
    # The mix exercises failures, not only perfect scores.
    assert (together.nc < 1).any() and (together.dac < 1).any() and (together.epdms < together.pdms).any()


def test_row_product_does_not_depend_on_the_number_of_rows():
    """The two linear operators applied to all rows of a batch (velocity fit, Savitzky-Golay) give each
    row the same bits whatever rides along; a BLAS GEMM does not (its kernel follows the shape)."""
    rng = np.random.default_rng(0)
    for w in (_velocity_fit_operator(40, 0.1, 1e-4).T, _savgol_operator(41, 15, 2, 1, 0.1)):
        x = rng.normal(size=(700, w.shape[0]))
        full = rows_times(x, w)
        for r in (1, 2, 3, 5, 8, 64, 333):
            np.testing.assert_array_equal(rows_times(x[:r], w), full[:r])
            np.testing.assert_array_equal(rows_times(x[r : r + 1], w)[0], full[r])
        np.testing.assert_allclose(full, x @ w, rtol=1e-12, atol=1e-12 * np.abs(x @ w).max())


def test_batched_interpolation_equals_per_scene():
    ctxs = [toy_context(s) for s in range(3)]
    traj = np.stack([toy_candidates(c, 5, s) for s, c in enumerate(ctxs)])
    poses = np.stack([c.ego_state[:3] for c in ctxs])
    stamps = np.array([c.timestamp_us for c in ctxs])
    batched = interpolate_candidates(traj, poses, stamps)
    for i, c in enumerate(ctxs):
        np.testing.assert_array_equal(batched[i], interpolate_candidates(traj[i], poses[i], c.timestamp_us))


def test_polyline_distance_test_matches_shapely():
    rng = np.random.default_rng(0)
    lines, pts = [], []
    for n in (5, 40, 13):  # different lengths: shorter lines are padded with their last vertex
        xy = np.cumsum(rng.normal(0, 1.5, (n, 2)), axis=0)
        xy[n // 2] = xy[n // 2 - 1]  # a zero-length segment
        lines.append(np.concatenate([xy, np.repeat(xy[-1:], 40 - n, axis=0)]))
        pts.append(xy[rng.integers(0, n, 300)] + rng.normal(0, 0.6, (300, 2)))
    lines, pts = np.stack(lines), np.stack(pts)
    far = polyline_farther_than(lines, pts, 0.5)
    for b in range(3):
        d = shapely.distance(LineString(lines[b]), shapely.points(pts[b]))
        clear = np.abs(d - 0.5) > 1e-9
        np.testing.assert_array_equal(far[b][clear], (d > 0.5)[clear])
        assert far[b].any() and not far[b].all()


def test_polygon_table_matches_shapely():
    rng = np.random.default_rng(1)
    scenes = [
        [box(0, 0, 4, 2), shapely.Polygon([(1, 1), (5, 0), (6, 4), (2, 5)]), box(-3, -3, -1, 0)],
        [box(10, 10, 12, 11)],
        [],
    ]
    table = PolygonTable.stack([PolygonSet(p) for p in scenes])
    xy = rng.uniform(-4, 13, (3, 500, 2))
    inside = table.inside(xy)
    assert inside.shape == (3, 500, 3)
    for b, polys in enumerate(scenes):
        expected = np.zeros((500, 3), dtype=bool)
        for j, poly in enumerate(polys):
            expected[:, j] = shapely.contains_xy(poly, xy[b, :, 0], xy[b, :, 1])
        np.testing.assert_array_equal(inside[b], expected)
        np.testing.assert_array_equal(table.any_inside(xy)[b], expected.any(-1))
        np.testing.assert_array_equal(table.inside_at(np.full(500, b), xy[b]), expected)
    assert inside[0].any() and not inside[2].any()
