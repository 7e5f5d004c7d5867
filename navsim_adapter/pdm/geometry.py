"""Vectorised geometry for scoring: ego footprints, oriented-box overlap (SAT), point-in-map tests.

The official scorer builds one shapely polygon per (proposal, step) and queries STRtrees in Python
loops; here boxes stay as corner arrays and overlaps are decided with the separating-axis theorem
on whole [..., 4, 2] batches. Map membership uses shapely 2's vectorised point queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.strtree import STRtree


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
    for i, (lon, lat) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
        lo, la = lon * hl, lat * hw
        # Same operation order as NAVSIM's translate_lon_and_lat (lat along heading + pi/2).
        out[..., i, 0] = center[..., 0] + (la * np.cos(heading + half_pi) + lo * np.cos(heading))
        out[..., i, 1] = center[..., 1] + (la * np.sin(heading + half_pi) + lo * np.sin(heading))
    return out


def ego_center(states_xyh: np.ndarray, vehicle: VehicleParameters = PACIFICA) -> np.ndarray:
    """Geometric centre [..., 2] of the ego box from rear-axle poses [..., 3]."""
    h = states_xyh[..., 2]
    d = vehicle.rear_axle_to_center
    return states_xyh[..., :2] + np.stack([d * np.cos(h), d * np.sin(h)], axis=-1)


def ego_corners(states_xyh: np.ndarray, vehicle: VehicleParameters = PACIFICA) -> tuple[np.ndarray, np.ndarray]:
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


def segment_box_overlap(seg: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Segment [..., 2, 2] intersects rectangle [..., 4, 2]."""
    return convex_overlap(seg, box, 1, 2)


class PolygonSet:
    """A list of map polygons with a bulk "points strictly inside which polygons" query."""

    def __init__(self, polygons: list):
        self.polygons = np.asarray(polygons, dtype=object) if len(polygons) else np.empty(0, dtype=object)
        self._tree = STRtree(self.polygons) if len(self.polygons) else None
        for p in self.polygons:
            shapely.prepare(p)

    def __len__(self) -> int:
        return len(self.polygons)

    def membership(self, xy: np.ndarray) -> np.ndarray:
        """Bool [len(polygons), *xy.shape[:-1]]: point strictly inside polygon (GEOS `within`)."""
        flat = xy.reshape(-1, 2)
        out = np.zeros((len(self.polygons), len(flat)), dtype=bool)
        if self._tree is not None and len(flat):
            pts = shapely.points(flat)
            pt_idx, poly_idx = self._tree.query(pts, predicate="within")
            out[poly_idx, pt_idx] = True
        return out.reshape((len(self.polygons),) + xy.shape[:-1])

    def any_contains(self, xy: np.ndarray) -> np.ndarray:
        """Bool [*xy.shape[:-1]]: point strictly inside at least one polygon."""
        flat = xy.reshape(-1, 2)
        out = np.zeros(len(flat), dtype=bool)
        if self._tree is not None and len(flat):
            pt_idx, _ = self._tree.query(shapely.points(flat), predicate="within")
            out[pt_idx] = True
        return out.reshape(xy.shape[:-1])
