"""Vectorised geometry for scoring: ego footprints, oriented-box overlap (SAT), point-in-map tests.

The official scorer builds one shapely polygon per (proposal, step) and queries STRtrees in Python
loops; here boxes stay as corner arrays and overlaps are decided with the separating-axis theorem
on whole [..., 4, 2] batches. Map membership uses shapely 2's vectorised point queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely


@dataclass(frozen=True)
class VehicleParameters:
    """Ego footprint (nuPlan's Chrysler Pacifica, the vehicle NAVSIM scores with)."""

    width: float = 1.1485 * 2.0
    front_length: float = 4.049
    rear_length: float = 1.127
    wheel_base: float = 3.089

    @property
    def length(self) -> float:
        return self.front_length + self.rear_length

    @property
    def half_length(self) -> float:
        return self.length / 2.0

    @property
    def half_width(self) -> float:
        return self.width / 2.0

    @property
    def rear_axle_to_center(self) -> float:
        return self.half_length - self.rear_length


PACIFICA = VehicleParameters()

# Corner order of a footprint, as nuPlan/NAVSIM use it: the front edge is corners 0 -> 3.
FRONT_LEFT, REAR_LEFT, REAR_RIGHT, FRONT_RIGHT = 0, 1, 2, 3


def box_corners(center: np.ndarray, heading: np.ndarray, length, width) -> np.ndarray:
    """Corners [..., 4, 2] (FL, RL, RR, FR) of oriented boxes centred at `center` [..., 2]."""
    half_pi = np.pi / 2.0
    hl = np.asarray(length, dtype=np.float64) / 2.0
    hw = np.asarray(width, dtype=np.float64) / 2.0
    out = np.empty(center.shape[:-1] + (4, 2), dtype=np.float64)
    c, s = np.cos(heading), np.sin(heading)
    c90, s90 = np.cos(heading + half_pi), np.sin(heading + half_pi)
    for i, (lon, lat) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
        lo, la = lon * hl, lat * hw
        # Same operation order as NAVSIM's translate_lon_and_lat (lat along heading + pi/2).
        out[..., i, 0] = center[..., 0] + (la * c90 + lo * c)
        out[..., i, 1] = center[..., 1] + (la * s90 + lo * s)
    return out


def ego_center(states_xyh: np.ndarray, vehicle: VehicleParameters = PACIFICA) -> np.ndarray:
    """Geometric centre [..., 2] of the ego box from rear-axle poses [..., 3]."""
    h = states_xyh[..., 2]
    d = vehicle.rear_axle_to_center
    return states_xyh[..., :2] + np.stack([d * np.cos(h), d * np.sin(h)], axis=-1)


def ego_corners(
    states_xyh: np.ndarray, vehicle: VehicleParameters = PACIFICA
) -> tuple[np.ndarray, np.ndarray]:
    """(corners [..., 4, 2], centre [..., 2]) of the ego footprint from rear-axle poses."""
    center = ego_center(states_xyh, vehicle)
    return box_corners(center, states_xyh[..., 2], vehicle.length, vehicle.width), center


def _project(poly: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = (poly * axis[..., None, :]).sum(-1)
    return d.min(-1), d.max(-1)


def _edge_normals(poly: np.ndarray, n_axes: int) -> list[np.ndarray]:
    axes = []
    for i in range(n_axes):
        e = poly[..., (i + 1) % poly.shape[-2], :] - poly[..., i, :]
        axes.append(np.stack([-e[..., 1], e[..., 0]], axis=-1))
    return axes


def convex_overlap(a: np.ndarray, b: np.ndarray, a_axes: int = 2, b_axes: int = 2) -> np.ndarray:
    """Whether convex polygons a [..., Ka, 2] and b [..., Kb, 2] intersect (touching counts).

    Separating-axis test; rectangles need only two edge normals each, a segment one.
    """
    hit = np.ones(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), dtype=bool)
    for axis in _edge_normals(a, a_axes) + _edge_normals(b, b_axes):
        amin, amax = _project(a, axis)
        bmin, bmax = _project(b, axis)
        hit &= (amax >= bmin) & (bmax >= amin)
    return hit


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Oriented rectangles a, b [..., 4, 2] (broadcast) intersect."""
    return convex_overlap(a, b, 2, 2)


def rect_overlap(c1, h1, hl1, hw1, c2, h2, hl2, hw2) -> np.ndarray:
    """Oriented rectangles given as centre [..., 2], heading, half length, half width overlap
    (touching counts). Separating-axis test in closed form on the four box axes."""
    u1 = np.stack([np.cos(h1), np.sin(h1)], -1)
    v1 = np.stack([-u1[..., 1], u1[..., 0]], -1)
    u2 = np.stack([np.cos(h2), np.sin(h2)], -1)
    v2 = np.stack([-u2[..., 1], u2[..., 0]], -1)
    d = c2 - c1
    cu = np.abs((u1 * u2).sum(-1))
    cv = np.abs((u1 * v2).sum(-1))
    su = np.abs((v1 * u2).sum(-1))
    sv = np.abs((v1 * v2).sum(-1))
    ok = np.abs((d * u1).sum(-1)) <= hl1 + hl2 * cu + hw2 * cv
    ok &= np.abs((d * v1).sum(-1)) <= hw1 + hl2 * su + hw2 * sv
    ok &= np.abs((d * u2).sum(-1)) <= hl2 + hl1 * cu + hw1 * su
    ok &= np.abs((d * v2).sum(-1)) <= hw2 + hl1 * cv + hw1 * sv
    return ok


def _to_segments(px, py, abx, aby, seg_len2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For points at offsets (px, py) from segment starts a, segments a -> a + ab with squared
    lengths seg_len2: the clamped parameter t of the nearest point and the offset point - nearest."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip((px * abx + py * aby) / seg_len2, 0.0, 1.0)
    t = np.where(seg_len2 > 0, t, 0.0)
    return t, px - t * abx, py - t * aby


def polyline_project(xy: np.ndarray, pts: np.ndarray, segments: np.ndarray | None = None) -> np.ndarray:
    """Arc length [..., P] of the nearest point on polyline xy [..., S+1, 2] to each point [..., P, 2]
    (shapely's `line_locate_point`; the first nearest segment wins ties). Leading dims broadcast,
    so B scenes' centrelines are projected in one pass; `segments` [...] (number of real segments
    of each padded line) keeps the padding out of the search."""
    ax, ay = xy[..., :-1, 0], xy[..., :-1, 1]
    abx, aby = xy[..., 1:, 0] - ax, xy[..., 1:, 1] - ay
    seg_len2 = abx * abx + aby * aby
    px, py = pts[..., :, 0, None] - ax[..., None, :], pts[..., :, 1, None] - ay[..., None, :]  # [..., P, S]
    t, dx, dy = _to_segments(px, py, abx[..., None, :], aby[..., None, :], seg_len2[..., None, :])
    dist2 = dx * dx + dy * dy
    if segments is not None:
        real = np.arange(dist2.shape[-1]) < np.asarray(segments)[..., None, None]
        dist2 = np.where(real, dist2, np.inf)
    best = np.argmin(dist2, axis=-1)[..., None]  # [..., P, 1]
    seg_len = np.sqrt(seg_len2)
    cum = np.concatenate([np.zeros(seg_len.shape[:-1] + (1,)), np.cumsum(seg_len, axis=-1)], axis=-1)
    along = np.take_along_axis(t, best, axis=-1)[..., 0]
    start = np.take_along_axis(cum[..., None, :], best, axis=-1)[..., 0]
    length = np.take_along_axis(seg_len[..., None, :], best, axis=-1)[..., 0]
    return start + along * length


def segment_box_overlap(seg: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Segment [..., 2, 2] intersects rectangle [..., 4, 2]."""
    return convex_overlap(seg, box, 1, 2)


class PolygonSet:
    """Map polygons of one role in one scene, prepared once (GEOS) with their bounding boxes."""

    def __init__(self, polygons: list):
        self.polygons = np.empty(len(polygons), dtype=object)
        self.polygons[:] = polygons
        shapely.prepare(self.polygons)
        self.bounds = shapely.bounds(self.polygons).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.polygons)

    def subset(self, keep: np.ndarray) -> PolygonSet:
        """The polygons where keep [Q] is True (already prepared: no GEOS work)."""
        out = PolygonSet.__new__(PolygonSet)
        out.polygons, out.bounds = self.polygons[keep], self.bounds[keep]
        return out


@dataclass
class PolygonTable:
    """The PolygonSets of B scenes side by side: slot j of scene b is polygons[index[b, j]].

    Padding slots have NaN bounds, so every bounding-box test fails on them. One `inside` call
    answers a point query for all scenes at once (one GEOS call for all candidate pairs)."""

    polygons: np.ndarray  # [Q] object, prepared
    index: np.ndarray  # [B, J] int (-1 = padding)
    bounds: np.ndarray  # [B, J, 4] (x0, y0, x1, y1)

    @classmethod
    def stack(cls, sets: list[PolygonSet]) -> PolygonTable:
        sizes = np.array([len(s) for s in sets], dtype=np.int64)
        width = int(sizes.max(initial=0))
        slot = np.arange(width)
        mask = slot[None, :] < sizes[:, None]  # [B, J]
        index = np.full(mask.shape, -1, dtype=np.int64)
        index[mask] = np.arange(int(sizes.sum()))
        bounds = np.full(mask.shape + (4,), np.nan)
        polygons = np.empty(0, dtype=object)
        if width:
            bounds[mask] = np.concatenate([s.bounds for s in sets])
            polygons = np.concatenate([s.polygons for s in sets])
        return cls(polygons, index, bounds)

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """Bool [B, P, J]: point xy[b, p] strictly inside slot j of scene b (GEOS `contains_xy`, the
        predicate NAVSIM's STRtree queries use), after a bounding-box cull."""
        hit = _in_bounds(self.bounds[:, None], xy[..., 0, None], xy[..., 1, None])
        b, p, j = np.nonzero(hit)
        if len(b):
            hit[b, p, j] = shapely.contains_xy(self.polygons[self.index[b, j]], xy[b, p, 0], xy[b, p, 1])
        return hit

    def inside_at(self, scene: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Bool [P, J]: point xy[p] [P, 2] of scene[p] strictly inside that scene's slot j."""
        hit = _in_bounds(self.bounds[scene], xy[:, 0, None], xy[:, 1, None])
        p, j = np.nonzero(hit)
        if len(p):
            hit[p, j] = shapely.contains_xy(self.polygons[self.index[scene[p], j]], xy[p, 0], xy[p, 1])
        return hit

    def any_inside(self, xy: np.ndarray) -> np.ndarray:
        """Bool [B, P]: point xy[b, p] strictly inside some polygon of scene b. Slot by slot, so a
        point already found inside is not tested again."""
        found = np.zeros(xy.shape[:2], dtype=bool)
        x, y = xy[..., 0], xy[..., 1]
        for j in range(self.index.shape[1]):
            b, p = np.nonzero(_in_bounds(self.bounds[:, None, j], x, y) & ~found)
            if len(b):
                found[b, p] = shapely.contains_xy(self.polygons[self.index[b, j]], x[b, p], y[b, p])
        return found


def _in_bounds(bounds: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x, y within bounding boxes (x0, y0, x1, y1) [..., 4] (broadcast; NaN bounds never hold)."""
    return (x >= bounds[..., 0]) & (x <= bounds[..., 2]) & (y >= bounds[..., 1]) & (y <= bounds[..., 3])


def polyline_farther_than(xy: np.ndarray, pts: np.ndarray, limit: float, group: int = 8) -> np.ndarray:
    """Bool [B, P]: point pts[b, p] farther than `limit` from polyline xy[b] [B, S+1, 2] (exact).

    Lines padded by repeating their last vertex are fine (a zero-length segment is a point of the
    line). Segments are grouped `group` at a time under a bounding box; only segments of boxes
    within `limit` of a point get the exact point-segment distance, for all scenes in one pass
    (no per-scene search structure to build).
    """
    b, p = pts.shape[:2]
    n_seg = xy.shape[1] - 1
    n_box = -(-n_seg // group)
    pad = n_box * group - n_seg
    v = np.concatenate([xy, np.repeat(xy[:, -1:], pad, axis=1)], axis=1) if pad else xy
    a, e = v[:, :-1].reshape(b, n_box, group, 2), v[:, 1:].reshape(b, n_box, group, 2)
    # Boxes grown by the limit (plus a margin: the box test only prunes, the exact distance decides).
    lo = np.minimum(a.min(2), e.min(2))[:, None] - (limit + 1e-6)  # [B, 1, boxes, 2]
    hi = np.maximum(a.max(2), e.max(2))[:, None] + (limit + 1e-6)
    x, y = pts[..., 0, None], pts[..., 1, None]  # [B, P, 1]
    bi, pi, ci = np.nonzero((x >= lo[..., 0]) & (x <= hi[..., 0]) & (y >= lo[..., 1]) & (y <= hi[..., 1]))
    near = np.zeros((b, p), dtype=bool)
    if len(bi):
        # The exact point-segment distance, for the segments of the candidate (point, box) pairs.
        ax, ay = a[..., 0], a[..., 1]
        abx, aby = e[..., 0] - ax, e[..., 1] - ay
        seg_len2 = abx * abx + aby * aby
        abx, aby, seg_len2 = abx[bi, ci], aby[bi, ci], seg_len2[bi, ci]  # [pairs, group]
        px = pts[bi, pi, 0, None] - ax[bi, ci]
        py = pts[bi, pi, 1, None] - ay[bi, ci]
        _, dx, dy = _to_segments(px, py, abx, aby, seg_len2)
        close = (np.hypot(dx, dy) <= limit).any(-1)
        near[bi[close], pi[close]] = True
    return ~near
