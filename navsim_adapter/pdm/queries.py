"""Stage 1 of scoring: every geometric query for B scenes x K rows x T steps in one pass.

Map areas (one GEOS point-in-polygon call per map role for all scenes), box contacts with the
agents (collisions and the TTC projections share one query; the separating-axis test runs only on
the few close pairs), red-light intersections and centreline projections. Stage 2 (metrics.py)
reduces these arrays to scores. Why batched over scenes: see batch.py.

Sequential rules of the official loops are reduced to "first contact" logic: a track that is first
touched without fault is ignored afterwards, and a track touched at fault already fixed the score,
so only the first contact of every (candidate, track) pair decides (same for TTC in (t, offset) order).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import shapely

from navsim_adapter.pdm.batch import SceneBatch
from navsim_adapter.pdm.config import METRICS, MetricConfig
from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.geometry import (
    FRONT_LEFT,
    FRONT_RIGHT,
    PACIFICA,
    box_corners,
    boxes_overlap,
    ego_corners,
    polyline_farther_than,
    polyline_project,
    rect_overlap,
    segment_box_overlap,
)
from navsim_adapter.pdm.simulation import DT, HEADING, VX, VY


class DeferredAreas:
    """Ego-area flags the metrics read only at contact steps (ego in multiple lanes, rear axle in an
    intersection): evaluated for the requested (scene, row, step) triples only, since testing every
    corner of every step against every lane was the largest single cost of a batch."""

    def __init__(self, batch: SceneBatch, corners: np.ndarray, rear: np.ndarray):
        self.batch, self.corners, self.rear = batch, corners, rear  # [B, K, T, 4, 2], [B, K, T, 2]

    def multiple_lanes(self, b: np.ndarray, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Corners in more than one lane / lane connector and none holding all four (NAVSIM)."""
        pts = self.corners[b, k, t].reshape(-1, 2)
        in_lane = self.batch.lanes.inside_at(np.repeat(b, 4), pts).reshape(len(b), 4, -1)
        return (in_lane.any(1).sum(-1) > 1) & ~in_lane.all(1).any(-1)

    def rear_in_intersection(self, b: np.ndarray, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.batch.intersections.inside_at(b, self.rear[b, k, t]).any(-1)

    def full(self, name: str) -> np.ndarray:
        """The flag at every step, [B, K, T]."""
        b, k, t = (i.ravel() for i in np.indices(self.rear.shape[:3]))
        return getattr(self, name)(b, k, t).reshape(self.rear.shape[:3])


@dataclass
class SceneGeometry:
    """Every geometric fact the metrics need; leading dims [B, K] (batch) or [K] (one scene)."""

    center: np.ndarray  # [..., T, 2]
    non_drivable: np.ndarray  # [..., T]
    oncoming: np.ndarray  # [..., T]
    center_in_intersection: np.ndarray  # [..., T]
    collision_first: np.ndarray  # [..., M] first step of contact (-1 = none)
    collision_front: np.ndarray  # [..., M] ego front edge touches the track at that step
    ttc_first: np.ndarray  # [..., M] first flat (t, offset) index of a projected contact (-1 = none)
    ttc_first_full: np.ndarray  # same over all steps (v1 evaluates the whole horizon)
    red_light: np.ndarray  # [...] ego touched an active red-light lane connector
    progress: np.ndarray  # [...] raw progress along the centreline [m]
    off_centerline: np.ndarray  # [..., T] centre more than the lane-keeping limit from the centreline
    active_agents: np.ndarray  # [B, M] / [M] agents kept (not overlapping ego at t = 0)
    deferred: DeferredAreas | None = None  # batch geometry: multiple lanes / rear in intersection
    multiple_lanes: np.ndarray | None = None  # [K, T], filled for one scene (scene_geometry)
    rear_in_intersection: np.ndarray | None = None  # [K, T], filled for one scene

    def area_at(self, name: str, b: np.ndarray, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Flag `name` ('multiple_lanes' or 'rear_in_intersection') of batch rows (b, k) at steps t."""
        return getattr(self.deferred, name)(b, k, t)

    def scene(self, i: int) -> SceneGeometry:
        """The [K, ...] geometry of scene i of a batch, every ego-area flag evaluated."""
        out = {f.name: getattr(self, f.name)[i] for f in fields(self) if f.name not in _DEFERRED}
        return SceneGeometry(**out, **{name: self.deferred.full(name)[i] for name in _DEFERRED[1:]})


_DEFERRED = ("deferred", "multiple_lanes", "rear_in_intersection")


def first_true(mask: np.ndarray, axis: int) -> np.ndarray:
    """Index of the first True along `axis`, -1 where none."""
    idx = mask.argmax(axis=axis)
    return np.where(mask.any(axis=axis), idx, -1)


def _contacts(pos, heading, boxes, reach2, frames, mask) -> np.ndarray:
    """Box overlap [B, K, Q, T, M] of ego boxes (centres pos [B, K, Q, T, 2], headings [B, K, T])
    with each scene's agents at frames [Q, T], where mask [B, K, Q, T]. Pairs farther apart than
    the sum of the bounding radii (reach2 [B, T_max, M], negative for invalid tracks) are skipped."""
    dx = pos[..., 0, None] - np.ascontiguousarray(boxes[..., 0])[:, frames][:, None]
    dy = pos[..., 1, None] - np.ascontiguousarray(boxes[..., 1])[:, frames][:, None]
    hit = (dx * dx + dy * dy <= reach2[:, frames][:, None]) & mask[..., None]
    b, k, q, t, m = np.nonzero(hit)
    if len(b):
        box = boxes[b, frames[q, t], m]
        hit[b, k, q, t, m] = rect_overlap(
            pos[b, k, q, t],
            heading[b, k, t],
            PACIFICA.half_length,
            PACIFICA.half_width,
            box[:, :2],
            box[:, 2],
            box[:, 3] / 2.0,
            box[:, 4] / 2.0,
        )
    return hit


def _map_areas(batch: SceneBatch, corners, center) -> dict[str, np.ndarray]:
    """NAVSIM's EgoAreaIndex at every step: non-drivable (a corner outside every drivable-area
    polygon), oncoming (centre outside every route lane), centre in an intersection."""
    b, k, t = center.shape[:3]
    drivable = batch.drivable.any_inside(corners.reshape(b, -1, 2)).reshape(b, k, t, 4)
    return {
        "non_drivable": ~drivable.all(-1),
        "oncoming": ~batch.route_lanes.any_inside(center.reshape(b, -1, 2)).reshape(b, k, t),
        "center_in_intersection": batch.intersections.any_inside(center.reshape(b, -1, 2)).reshape(b, k, t),
    }


def _red_lights(batch: SceneBatch, corners: np.ndarray) -> np.ndarray:
    """[B, K]: the ego polygon intersects an active red-light lane connector at some step."""
    b, k, t = corners.shape[:3]
    red = np.zeros((b, k), dtype=bool)
    active = batch.red_active[:, :t]  # [B, T, L]
    if not active.any():
        return red
    lo, hi = corners.min(-2)[..., None, :], corners.max(-2)[..., None, :]  # [B, K, T, 1, 2]
    bd = batch.red_lights.bounds[:, None, None]  # [B, 1, 1, L, 4]
    near = (lo[..., 0] <= bd[..., 2]) & (hi[..., 0] >= bd[..., 0]) & (lo[..., 1] <= bd[..., 3])
    near &= (hi[..., 1] >= bd[..., 1]) & active[:, None]
    bi, ki, ti, li = np.nonzero(near)
    if len(bi):
        lights = batch.red_lights.polygons[batch.red_lights.index[bi, li]]
        inter = shapely.intersects(lights, shapely.polygons(corners[bi, ki, ti]))  # lights are prepared
        red[bi[inter], ki[inter]] = True
    return red


def _agent_contacts(batch: SceneBatch, states, corners, center, cfg: MetricConfig) -> dict[str, np.ndarray]:
    """First collision (and whether the ego front edge made it) and first TTC contact per track."""
    b, k, t = states.shape[:3]
    # Drop tracks overlapping the first row's footprint at t = 0 (NAVSIM's log-replay policy).
    boxes = batch.agent_boxes
    m = boxes.shape[2]
    first = boxes[:, 0]
    ag0 = box_corners(first[..., :2], first[..., 2], first[..., 3], first[..., 4])  # [B, M, 4, 2]
    active = ~(batch.agent_valid[:, 0] & boxes_overlap(corners[:, 0, 0][:, None], ag0))
    valid = batch.agent_valid & active[:, None]

    # One contact query: collisions (offset 0, all steps) and the TTC projections (ego pushed
    # forward at constant speed, vs agents at t + offset) on the steps TTC evaluates.
    heading = states[..., HEADING]
    speed = np.hypot(states[..., VX], states[..., VY])
    dxy = np.stack([np.cos(states[..., HEADING]) * speed, np.sin(states[..., HEADING]) * speed], -1)
    offsets = cfg.ttc_offsets
    shifts = (0,) + tuple(o for o in offsets if o)
    steps = np.arange(t)
    n_full = np.minimum(t, batch.agent_steps - max(offsets))  # [B] (the agents' horizon ends TTC)
    ttc_ok = (steps < n_full[:, None])[:, None] & (speed >= cfg.stopped_speed_threshold)  # [B, K, T]
    pos = np.stack([center if o == 0 else center + dxy * (float(o) * DT) for o in shifts], 2)
    frames = np.minimum(steps[None] + np.array(shifts)[:, None], boxes.shape[1] - 1)  # [Q, T]
    mask = np.broadcast_to(ttc_ok[:, :, None], (b, k, len(shifts), t)).copy()
    mask[:, :, 0] = True
    ego_r = np.hypot(PACIFICA.half_length, PACIFICA.half_width)
    reach2 = np.where(valid, (ego_r + 0.5 * np.hypot(boxes[..., 3], boxes[..., 4]) + 1e-6) ** 2, -1.0)
    hit = _contacts(pos, heading, boxes, reach2, frames, mask)  # [B, K, Q, T, M]

    collision_first = first_true(hit[:, :, 0], axis=2)  # [B, K, M]
    front = np.zeros((b, k, m), dtype=bool)
    bi, ki, mi = np.nonzero(collision_first >= 0)
    if len(bi):
        ts = collision_first[bi, ki, mi]
        box = boxes[bi, ts, mi]
        seg = corners[bi, ki, ts][:, [FRONT_LEFT, FRONT_RIGHT]]
        front[bi, ki, mi] = segment_box_overlap(seg, box_corners(box[:, :2], box[:, 2], box[:, 3], box[:, 4]))

    ttc_hit = np.stack(
        [hit[:, :, 0] & ttc_ok[..., None] if o == 0 else hit[:, :, shifts.index(o)] for o in offsets], 3
    )  # [B, K, T, offsets, M]
    n_off = len(offsets)
    n_v2 = t - max(offsets)  # steps 0 .. 40 - 9
    return {
        "collision_first": collision_first,
        "collision_front": front,
        "ttc_first": first_true(ttc_hit[:, :, :n_v2].reshape(b, k, n_v2 * n_off, m), axis=2),
        "ttc_first_full": first_true(ttc_hit.reshape(b, k, t * n_off, m), axis=2),
        "active_agents": active,
    }


def _centreline(batch: SceneBatch, center: np.ndarray, cfg: MetricConfig) -> dict[str, np.ndarray]:
    """Progress of the centre along the centreline from t0 to the end; lateral limit every step."""
    b, k, t = center.shape[:3]
    # Rows of a scene usually share their start (the current ego state): project it once then.
    start = center[:, :, 0]
    if (start == start[:, :1]).all():
        start = start[:, :1]
    ends = np.concatenate([start, center[:, :, -1]], 1)
    proj = polyline_project(batch.centerline, ends, batch.centerline_segments)
    far = polyline_farther_than(batch.centerline, center.reshape(b, -1, 2), cfg.lane_keeping_deviation_limit)
    return {
        "progress": np.clip(proj[:, start.shape[1] :] - proj[:, : start.shape[1]], 0.0, None),
        "off_centerline": far.reshape(b, k, t),
    }


def batch_geometry(batch: SceneBatch, states: np.ndarray, cfg: MetricConfig = METRICS) -> SceneGeometry:
    """Map areas, contacts and centreline projections for states [B, K, T, 11] of B scenes."""
    corners, center = ego_corners(states[..., :3])  # [B, K, T, 4, 2], [B, K, T, 2]
    return SceneGeometry(
        center=center,
        **_map_areas(batch, corners, center),
        **_agent_contacts(batch, states, corners, center, cfg),
        red_light=_red_lights(batch, corners),
        **_centreline(batch, center, cfg),
        deferred=DeferredAreas(batch, corners, states[..., :2]),
    )


def scene_geometry(ctx: ScoringContext, states: np.ndarray, cfg: MetricConfig = METRICS) -> SceneGeometry:
    """The geometry of states [K, T, 11] of one scene (fields [K, ...])."""
    return batch_geometry(SceneBatch.from_contexts([ctx]), states[None], cfg).scene(0)
