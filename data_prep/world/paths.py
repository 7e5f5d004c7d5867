"""Arc-length parametrised polylines: lane baselines, vehicle paths and the ego's route.

Everything that moves in the world moves along one of these, so the queries are the few the
simulation needs: pose at arc length, nearest arc length of points, curvature, lateral offsets.
"""

from __future__ import annotations

import numpy as np

from navsim_adapter.geometry import wrap_angle


def arc_poses(
    start: tuple[float, float, float], pieces: list[tuple[float, float]], step: float = 1.0
) -> np.ndarray:
    """Integrate constant-curvature pieces [(length, curvature)] from `start` (x, y, heading) exactly.

    Returns (N, 3) poses every `step` metres (plus each piece's end), so straights and arcs meet smoothly.
    """
    x, y, h = map(float, start)
    out = [(x, y, h)]
    for length, kappa in pieces:
        n = max(1, int(np.ceil(length / step)))
        ds = np.linspace(length / n, length, n)
        if abs(kappa) < 1e-9:
            xs, ys, hs = x + ds * np.cos(h), y + ds * np.sin(h), np.full(n, h)
        else:
            hs = h + kappa * ds
            xs = x + (np.sin(hs) - np.sin(h)) / kappa
            ys = y - (np.cos(hs) - np.cos(h)) / kappa
        out.extend(zip(xs, ys, hs, strict=True))
        x, y, h = out[-1]
    return np.asarray(out, dtype=np.float64)


def hermite_poses(start: np.ndarray, end: np.ndarray, step: float = 1.0, scale: float = 1.0) -> np.ndarray:
    """A cubic Hermite curve between two poses (used for lane connectors through a junction)."""
    p0, p1 = np.asarray(start[:2], float), np.asarray(end[:2], float)
    chord = float(np.linalg.norm(p1 - p0))
    m0 = scale * chord * np.array([np.cos(start[2]), np.sin(start[2])])
    m1 = scale * chord * np.array([np.cos(end[2]), np.sin(end[2])])
    t = np.linspace(0.0, 1.0, max(3, int(np.ceil(chord * 1.3 / step)) + 1))[:, None]
    h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
    xy = h00 * p0 + h10 * m0 + h01 * p1 + h11 * m1
    dxy = (
        (6 * t**2 - 6 * t) * p0
        + (3 * t**2 - 4 * t + 1) * m0
        + (-6 * t**2 + 6 * t) * p1
        + (3 * t**2 - 2 * t) * m1
    )
    return np.column_stack([xy, np.arctan2(dxy[:, 1], dxy[:, 0])])


def turn_poses(start: np.ndarray, end: np.ndarray, step: float = 1.0) -> np.ndarray:
    """A right-angle turn from `start` to `end` as straight - circular arc - straight.

    The radius is the largest that fits (the shorter leg), so curvature stays bounded and constant
    through the turn, unlike a cubic. Requires headings 90 degrees apart, as at a four-way junction.
    """
    c, s = np.cos(start[2]), np.sin(start[2])
    dx, dy = end[0] - start[0], end[1] - start[1]
    a, b = c * dx + s * dy, -s * dx + c * dy  # end in the start frame
    radius = min(a, abs(b))
    if radius <= 0:
        raise ValueError(f"no forward right-angle turn from {start} to {end}")
    kappa = np.sign(b) / radius
    pieces = [(a - radius, 0.0), (radius * np.pi / 2, kappa), (abs(b) - radius, 0.0)]
    return arc_poses(tuple(start), [(length, k) for length, k in pieces if length > 1e-6], step)


class Path:
    """A polyline of poses (N, 3) with cumulative arc length `s`."""

    def __init__(self, poses: np.ndarray):
        poses = np.asarray(poses, dtype=np.float64)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1) > 1e-6])
        self.poses = poses[keep]
        if len(self.poses) < 2:
            raise ValueError("a Path needs at least two distinct points")
        seg = np.linalg.norm(np.diff(self.poses[:, :2], axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self._unwrapped = np.unwrap(self.poses[:, 2])
        dh = np.diff(self._unwrapped) / np.maximum(seg, 1e-6)
        self.kappa = np.concatenate([dh, dh[-1:]])
        self.max_abs_curvature = float(np.abs(self.kappa).max())

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s: np.ndarray | float) -> np.ndarray:
        """Poses (..., 3) at arc lengths `s`, extrapolated straight beyond both ends."""
        s = np.asarray(s, dtype=np.float64)
        sc = np.clip(s, 0.0, self.length)
        x = np.interp(sc, self.s, self.poses[:, 0])
        y = np.interp(sc, self.s, self.poses[:, 1])
        h = np.interp(sc, self.s, self._unwrapped)
        extra = s - sc
        return np.stack([x + extra * np.cos(h), y + extra * np.sin(h), wrap_angle(h)], axis=-1)

    def curvature(self, s: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(s, dtype=np.float64), self.s, self.kappa)

    def project(
        self, xy: np.ndarray, s_min: float = -np.inf, s_max: float = np.inf
    ) -> tuple[np.ndarray, np.ndarray]:
        """Arc length and signed lateral offset (left positive) of points (M, 2) on this path.

        Only segments overlapping [s_min, s_max] are searched, which keeps self-approaching paths
        (a U-shaped route) unambiguous and the search cheap.
        """
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        lo = max(0, int(np.searchsorted(self.s, s_min)) - 1)
        hi = min(len(self.s), int(np.searchsorted(self.s, s_max)) + 1)
        if hi - lo < 2:
            lo, hi = max(0, min(lo, len(self.s) - 2)), max(2, min(hi, len(self.s)))
        a, b = self.poses[lo : hi - 1, :2], self.poses[lo + 1 : hi, :2]
        ab = b - a
        seg_len2 = np.maximum((ab**2).sum(-1), 1e-12)
        rel = xy[:, None, :] - a[None]
        u = np.clip((rel * ab[None]).sum(-1) / seg_len2, 0.0, 1.0)
        closest = a[None] + u[..., None] * ab[None]
        d2 = ((xy[:, None, :] - closest) ** 2).sum(-1)
        k = np.argmin(d2, axis=1)
        rows = np.arange(len(xy))
        s = self.s[lo + k] + u[rows, k] * np.sqrt(seg_len2[k])
        cross = ab[k, 0] * rel[rows, k, 1] - ab[k, 1] * rel[rows, k, 0]
        lateral = np.sign(cross) * np.sqrt(d2[rows, k])
        return s, lateral

    def offset(self, d: float) -> np.ndarray:
        """Points (N, 2) displaced `d` metres to the left of the path (negative: right)."""
        h = self.poses[:, 2]
        return self.poses[:, :2] + d * np.column_stack([-np.sin(h), np.cos(h)])

    def slice(self, s0: float, s1: float, step: float = 1.0) -> Path:
        n = max(2, int(np.ceil((s1 - s0) / step)) + 1)
        return Path(self.at(np.linspace(s0, s1, n)))

    def reversed(self) -> Path:
        poses = self.poses[::-1].copy()
        poses[:, 2] = wrap_angle(poses[:, 2] + np.pi)
        return Path(poses)

    @staticmethod
    def concat(paths: list[Path]) -> Path:
        return Path(np.concatenate([p.poses for p in paths], axis=0))
