"""Camera images of the synthetic world: pinhole projection + painter's algorithm with PIL.

Ground layers (grass, sidewalks, road, crosswalks, lane markings) are flat polygons drawn in layer
order; curbs, vehicles, pedestrians, obstacles and traffic lights are 3-D boxes drawn far to near.
Polygons crossing the camera's near plane are clipped before projection; the projection is
`camera.project_points` (the same one the tests check against known points).
"""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image, ImageDraw

from data_prep.world import agents as A
from data_prep.world.camera import CameraSpec, camera_to_pixels, ego_to_camera, project_points
from data_prep.world.road import WHITE, RoadNetwork
from navsim_adapter.geometry import global_to_local, local_to_global

NEAR = 0.3
VIEW_RANGE = 140.0
SKY, GRASS = (140, 182, 226), (96, 128, 78)
COLORS = {
    "walkway": (168, 166, 160),
    "road": (78, 78, 84),
    WHITE: (232, 232, 232),
    "yellow": (228, 188, 40),
    "curb": (192, 190, 184),
    A.PEDESTRIAN: (250, 140, 20),
    A.BICYCLE: (30, 170, 170),
    A.TRAFFIC_CONE: (255, 100, 0),
    A.BARRIER: (235, 60, 60),
    A.CZONE_SIGN: (255, 150, 0),
    A.GENERIC_OBJECT: (140, 100, 60),
    "pole": (60, 60, 60),
    "red": (255, 20, 20),
    "green": (20, 230, 60),
    "dark": (25, 25, 25),
}
VEHICLE_PALETTE = [
    (190, 30, 30),
    (30, 60, 160),
    (215, 215, 215),
    (40, 40, 40),
    (120, 122, 130),
    (200, 160, 40),
    (30, 120, 60),
]
# box faces as corner indices: corners 0-3 bottom (front-left, rear-left, rear-right, front-right), 4-7 top
_FACES = np.array([(0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7), (4, 5, 6, 7)])
_FACE_SHADE = np.array([0.72, 0.6, 0.72, 0.85, 1.0])


def clip_near(poly: np.ndarray, near: float = NEAR) -> np.ndarray:
    """Clip a polygon (N, 3) in camera coordinates to z >= near (Sutherland-Hodgman, one plane)."""
    inside = poly[:, 2] >= near
    if inside.all():
        return poly
    if not inside.any():
        return poly[:0]
    nxt = np.roll(poly, -1, axis=0)
    nxt_inside = np.roll(inside, -1)
    dz = nxt[:, 2] - poly[:, 2]
    t = (near - poly[:, 2]) / np.where(dz == 0, 1e-12, dz)
    cross = poly + t[:, None] * (nxt - poly)
    candidates = np.stack([poly, cross], axis=1).reshape(-1, 3)
    keep = np.stack([inside, inside != nxt_inside], axis=1).reshape(-1)
    return candidates[keep]


def box_corners_3d(boxes: np.ndarray) -> np.ndarray:
    """Corners (N, 8, 3) of boxes (N, 7) [x, y, z_centre, length, width, height, heading]."""
    boxes = np.atleast_2d(boxes)
    x, y, z, length, width, height, h = (boxes[:, i : i + 1] for i in range(7))
    dx = np.array([[1, -1, -1, 1]]) * length / 2
    dy = np.array([[1, 1, -1, -1]]) * width / 2
    xs, ys = np.moveaxis(local_to_global(np.stack([dx, dy], -1), np.stack([x, y, h], -1)), -1, 0)
    bottom = np.stack([xs, ys, np.broadcast_to(z - height / 2, xs.shape)], axis=-1)
    top = np.stack([xs, ys, np.broadcast_to(z + height / 2, xs.shape)], axis=-1)
    return np.concatenate([bottom, top], axis=1)


def _face_normals(heading: np.ndarray) -> np.ndarray:
    """Outward normals (N, 5, 3) of the faces in `_FACES` order: left, rear, right, front, top."""
    c, s = np.cos(heading), np.sin(heading)
    z = np.zeros_like(c)
    return np.stack(
        [
            np.stack([-s, c, z], -1),
            np.stack([-c, -s, z], -1),
            np.stack([s, -c, z], -1),
            np.stack([c, s, z], -1),
            np.stack([z, z, z + 1], -1),
        ],
        axis=1,
    )


class SceneRenderer:
    """Renders one road network from any ego pose; build once per log, call per frame."""

    def __init__(self, net: RoadNetwork):
        self.net = net
        ground: list[tuple[np.ndarray, tuple[int, int, int]]] = []
        ground += [(p, COLORS["walkway"]) for _, p in net.walkways]
        ground += [(b.polygon, COLORS["road"]) for b in net.blocks.values()]
        ground += [(p, COLORS["road"]) for _, p in net.intersections]
        ground += [(p, COLORS[c]) for p, c in net.markings]
        # curbs: 15 cm vertical strips along the road edges
        for curb in net.curbs:
            for k in range(0, len(curb) - 1, 10):
                piece = curb[k : k + 11]
                ground.append(
                    (
                        np.concatenate(
                            [
                                np.column_stack([piece, np.zeros(len(piece))]),
                                np.column_stack([piece[::-1], np.full(len(piece), 0.15)]),
                            ]
                        ),
                        COLORS["curb"],
                    )
                )
        self.colors = [c for _, c in ground]
        polys3 = [p if p.shape[1] == 3 else np.column_stack([p, np.zeros(len(p))]) for p, _ in ground]
        self.offsets = np.cumsum([0] + [len(p) for p in polys3])
        self.verts = np.concatenate(polys3) if polys3 else np.zeros((0, 3))
        self.centres = np.array([p[:, :2].mean(axis=0) for p in polys3]).reshape(-1, 2)
        self.radii = np.array(
            [np.linalg.norm(p[:, :2] - c, axis=1).max() for p, c in zip(polys3, self.centres, strict=True)]
        )

    @staticmethod
    def _draw(
        draw: ImageDraw.ImageDraw, cam_poly: np.ndarray, cam: CameraSpec, color, uv: np.ndarray | None = None
    ) -> None:
        """Fill one polygon given in camera coordinates (`uv`: its projection if fully in front)."""
        if uv is None:
            clipped = clip_near(cam_poly)
            if len(clipped) < 3:
                return
            uv = camera_to_pixels(clipped, cam.intrinsics)
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        if hi[0] < 0 or lo[0] > cam.width or hi[1] < 0 or lo[1] > cam.height:
            return
        draw.polygon(np.clip(uv, -1e5, 1e5).ravel().tolist(), fill=color)

    def _draw_ground(self, draw, cam_pts: np.ndarray, near: np.ndarray, cam: CameraSpec) -> None:
        """Draw the ground polygons in layer order, rejecting invisible ones in one vectorised pass."""
        starts = self.offsets[:-1]
        z = cam_pts[:, 2]
        zmax, zmin = np.maximum.reduceat(z, starts), np.minimum.reduceat(z, starts)
        safe = cam_pts.copy()
        safe[:, 2] = np.maximum(z, NEAR)  # exact for polygons entirely beyond the near plane
        uv = camera_to_pixels(safe, cam.intrinsics)
        lo = np.stack([np.minimum.reduceat(uv[:, i], starts) for i in (0, 1)], -1)
        hi = np.stack([np.maximum.reduceat(uv[:, i], starts) for i in (0, 1)], -1)
        outside = (hi[:, 0] < 0) | (lo[:, 0] > cam.width) | (hi[:, 1] < 0) | (lo[:, 1] > cam.height)
        in_front = zmin >= NEAR
        visible = near & (zmax >= NEAR) & ~(in_front & outside)
        for k in np.flatnonzero(visible):
            a, b = self.offsets[k], self.offsets[k + 1]
            if in_front[k]:
                self._draw(draw, None, cam, self.colors[k], uv[a:b])
            else:
                self._draw(draw, cam_pts[a:b], cam, self.colors[k])

    def render(
        self,
        ego_pose: np.ndarray,
        boxes: np.ndarray,
        names: list[str],
        tracks: list[str],
        t: float,
        cams: list[CameraSpec],
    ) -> dict[str, Image.Image]:
        """Images seen by `cams` with the ego at `ego_pose` (x, y, heading in the world's local frame)."""
        ego_pose = np.asarray(ego_pose, dtype=np.float64)
        near = np.linalg.norm(self.centres - ego_pose[:2], axis=1) < VIEW_RANGE + self.radii
        ground = self.verts.copy()
        ground[:, :2] = global_to_local(ground[:, :2], ego_pose)

        solids, solid_colors = self._solids(ego_pose, boxes, names, tracks, t)
        corners = box_corners_3d(solids) if len(solids) else np.zeros((0, 8, 3))
        normals = _face_normals(solids[:, 6]) if len(solids) else np.zeros((0, 5, 3))
        face_pts = corners[:, _FACES]  # (N, 5, 4, 3)
        face_centres = face_pts.mean(axis=2)

        images = {}
        for cam in cams:
            img = Image.new("RGB", (cam.width, cam.height), SKY)
            draw = ImageDraw.Draw(img)
            grass = np.array([[-250.0, -250.0, 0], [250.0, -250.0, 0], [250.0, 250.0, 0], [-250.0, 250.0, 0]])
            self._draw(draw, ego_to_camera(grass, cam.rotation, cam.translation), cam, GRASS)
            if len(self.colors):
                self._draw_ground(draw, ego_to_camera(ground, cam.rotation, cam.translation), near, cam)
            if len(solids):
                visible = ((cam.translation - face_centres) * normals).sum(-1) > 0
                flat = ego_to_camera(face_pts.reshape(-1, 3), cam.rotation, cam.translation).reshape(
                    face_pts.shape
                )
                dist = np.linalg.norm(solids[:, :2] - cam.translation[:2], axis=1)
                for i in np.argsort(-dist, kind="stable"):
                    faces = np.flatnonzero(visible[i])
                    for f in faces[np.argsort(-flat[i, faces, :, 2].mean(-1), kind="stable")]:
                        color = tuple(
                            int(c) for c in np.clip(np.array(solid_colors[i]) * _FACE_SHADE[f], 0, 255)
                        )
                        self._draw(draw, flat[i, f], cam, color)
            images[cam.name] = img
        return images

    def _solids(self, ego_pose: np.ndarray, boxes: np.ndarray, names: list[str], tracks: list[str], t: float):
        """Ego-frame boxes (N, 7) and colours of agents and traffic-light parts in view range."""
        out, colors = [], []
        if len(boxes):
            local = boxes.copy()
            local[:, [0, 1, 6]] = global_to_local(boxes[:, [0, 1, 6]], ego_pose)
            for box, name, track in zip(local, names, tracks, strict=True):
                if np.hypot(box[0], box[1]) > VIEW_RANGE:
                    continue
                out.append(box)
                if name == A.VEHICLE:
                    colors.append(VEHICLE_PALETTE[zlib.crc32(track.encode()) % len(VEHICLE_PALETTE)])
                else:
                    colors.append(COLORS.get(name, COLORS[A.GENERIC_OBJECT]))
        for light in self.net.lights:
            x, y, h = global_to_local(np.array([*light.position[:2], light.facing]), ego_pose)
            if np.hypot(x, y) > VIEW_RANGE:
                continue
            red = self.net.is_red(light.group, t)
            lamp_z = 5.25 if red else 4.55
            out += [
                np.array([x, y, 2.2, 0.2, 0.2, 4.4, h]),
                np.array([x, y, 4.9, 0.5, 0.5, 1.2, h]),
                np.array([x + 0.3 * np.cos(h), y + 0.3 * np.sin(h), lamp_z, 0.1, 0.42, 0.42, h]),
            ]
            colors += [COLORS["pole"], COLORS["dark"], COLORS["red" if red else "green"]]
        return (np.array(out) if out else np.zeros((0, 7))), colors


__all__ = [
    "SceneRenderer",
    "box_corners_3d",
    "clip_near",
    "project_points",
]  # project_points: the projection used
