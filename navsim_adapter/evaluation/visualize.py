"""Bird's-eye view of a scene, in the current rear-axle frame, plus the front camera.

`plot_scene` draws onto any matplotlib Axes so the evaluator can put candidate / predicted
trajectories into its own figures; `render_scene` builds the BEV + camera figure the CLI saves:

    python -m navsim_adapter.evaluation.visualize --data-root DIR --split NAME --token T --out FILE.png

Plot axes follow NAVSIM's BEV convention: forward (local +x) points up, left (local +y) points left.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import shapely
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: figures render with Agg, headless on CI and SLURM nodes
from matplotlib.patches import Polygon as PolygonPatch

from navsim_adapter.geometry import global_to_local
from navsim_adapter.pdm.geometry import box_corners, ego_corners  # the footprints NAVSIM scores with
from navsim_adapter.scene import Scene

log = logging.getLogger(__name__)


AGENT_COLORS = {"vehicle": "#1f77b4", "pedestrian": "#9467bd", "bicycle": "#e377c2"}
MAP_STYLE = {  # layer name -> (face, edge, zorder)
    "ROADBLOCK": ("#e6e6e6", "none", 0),
    "ROADBLOCK_CONNECTOR": ("#e6e6e6", "none", 0),
    "INTERSECTION": ("#d9d9d9", "none", 0),
    "CARPARK_AREA": ("#eeeeee", "none", 0),
    "CROSSWALK": ("none", "#999999", 1),
    "WALKWAYS": ("#f4f1e8", "none", 0),
}
HUMAN_COLOR, HISTORY_COLOR, EGO_COLOR = "#2ca02c", "#555555", "#d62728"


def to_plot(local_xy: np.ndarray) -> np.ndarray:
    """Local (x forward, y left) -> plot (right, up)."""
    local_xy = np.asarray(local_xy)
    return np.stack([-local_xy[..., 1], local_xy[..., 0]], axis=-1)


def _resolve_map(scene: Scene, map_api):
    if map_api != "auto":
        return map_api
    try:
        return scene.map_api
    except (ImportError, FileNotFoundError) as err:  # no maps package yet / no map file for this data
        log.info("no map for %s: %s", scene.metadata.map_name, err)
        return None


def _draw_map(ax: Axes, scene: Scene, map_api, radius: float) -> int:
    """Draw polygons within `radius` of ego and the on-route lanes' centre lines; returns patches drawn."""
    from navsim_adapter.maps.base import LaneLike, MapLayer

    origin = scene.current_frame.ego_status.ego_pose
    layers = tuple(MapLayer(name) for name in MAP_STYLE) + (MapLayer.LANE, MapLayer.LANE_CONNECTOR)
    on_route = set(scene.current_frame.roadblock_ids)
    red = {lc for lc, is_red in scene.current_frame.traffic_lights if is_red}
    count = 0
    for obj in map_api.objects_near(origin[:2], radius * 1.5, layers):
        face, edge, z = MAP_STYLE.get(obj.layer.value, ("none", "#bbbbbb", 1))
        for part in shapely.get_parts(obj.polygon):
            xy = to_plot(global_to_local(np.asarray(part.exterior.coords)[:, :2], origin))
            ax.add_patch(
                PolygonPatch(
                    xy, closed=True, facecolor=face, edgecolor=edge, lw=0.6, zorder=z, gid=f"map:{obj.id}"
                )
            )
            count += 1
        if isinstance(obj, LaneLike) and len(obj.baseline):
            line = to_plot(global_to_local(obj.baseline[:, :2], origin))
            if obj.id in red:
                color, style = "#ff0000", "-"
            elif obj.roadblock_id in on_route:
                color, style = "#8fbcd4", "--"
            else:
                color, style = "#cccccc", ":"
            ax.plot(line[:, 0], line[:, 1], style, color=color, lw=0.8, zorder=2)
    return count


def _draw_box(ax: Axes, corners: np.ndarray, color: str, gid: str, z: int) -> None:
    ax.add_patch(
        PolygonPatch(
            to_plot(corners),
            closed=True,
            facecolor=color,
            edgecolor="black",
            lw=0.6,
            alpha=0.85,
            zorder=z,
            gid=gid,
        )
    )
    front = to_plot(corners[[0, 3]].mean(axis=0))
    centre = to_plot(corners.mean(axis=0))
    ax.plot([centre[0], front[0]], [centre[1], front[1]], color="black", lw=0.6, zorder=z + 1)


def plot_scene(
    scene: Scene,
    ax: Axes,
    trajectories: Mapping[str, np.ndarray] | None = None,
    *,
    map_api="auto",
    radius: float = 40.0,
    show_human: bool = True,
) -> Axes:
    """Draw map, agents, ego (history, human future) and extra `trajectories` ({name: (T, 3) local}).

    `map_api="auto"` uses `scene.map_api` when a map exists for the scene; pass None to skip the map.
    """
    map_api = _resolve_map(scene, map_api)
    if map_api is not None:
        _draw_map(ax, scene, map_api, radius)
    anns = scene.current_frame.annotations
    corners = box_corners(anns.boxes[:, :2], anns.boxes[:, 6], anns.boxes[:, 3], anns.boxes[:, 4])
    for i in range(len(anns)):
        _draw_box(
            ax, corners[i], AGENT_COLORS.get(anns.names[i], "#7f7f7f"), f"agent:{anns.track_tokens[i]}", 4
        )
    _draw_box(ax, ego_corners(np.zeros(3))[0], EGO_COLOR, "ego", 6)  # Pacifica around the rear axle

    history = to_plot(scene.get_history_trajectory()[:, :2])
    ax.plot(
        history[:, 0], history[:, 1], "o-", color=HISTORY_COLOR, ms=3, lw=1.2, zorder=7, label="ego history"
    )
    if show_human and scene.metadata.num_future_frames:
        future = to_plot(scene.get_future_trajectory(min(8, scene.metadata.num_future_frames))[:, :2])
        ax.plot(future[:, 0], future[:, 1], "o-", color=HUMAN_COLOR, ms=3, lw=1.5, zorder=8, label="human")
    for name, traj in (trajectories or {}).items():
        traj = np.asarray(traj)
        if traj.ndim != 2 or traj.shape[1] < 2:
            raise ValueError(f"trajectory '{name}' must be (T, 3) local poses, got shape {traj.shape}")
        pts = to_plot(np.vstack([np.zeros((1, 2)), traj[:, :2]]))  # start at the rear axle
        ax.plot(pts[:, 0], pts[:, 1], "o-", ms=2.5, lw=1.3, zorder=9, label=name)

    ax.set_xlim(-radius, radius)
    ax.set_ylim(-radius * 0.5, radius * 1.5)
    ax.set_aspect("equal")
    ax.set_xlabel("<- left | right -> [m]")
    ax.set_ylabel("x forward [m]")
    ax.set_title(f"{scene.metadata.log_name}\ntoken {scene.token}", fontsize=8)
    ax.legend(loc="upper right", fontsize=7)
    return ax


def render_scene(
    scene: Scene,
    trajectories: Mapping[str, np.ndarray] | None = None,
    *,
    map_api="auto",
    camera: str = "cam_f0",
    radius: float = 40.0,
) -> Figure:
    """BEV on the left, `camera`'s current image on the right (a note if the image is not on disk)."""
    fig = Figure(figsize=(14, 6), dpi=100)
    bev, cam_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    plot_scene(scene, bev, trajectories, map_api=map_api, radius=radius)
    cam = getattr(scene.current_frame.cameras, camera)
    cam_ax.set_axis_off()
    try:
        image = cam.image
    except FileNotFoundError as err:
        image, note = None, str(err)
    else:
        note = f"{camera}: not in this log"
    if image is None:
        cam_ax.text(
            0.5, 0.5, note, ha="center", va="center", wrap=True, fontsize=8, transform=cam_ax.transAxes
        )
    else:
        cam_ax.imshow(image)
        cam_ax.set_title(camera, fontsize=8)
    fig.tight_layout()
    return fig


def _parse_trajectory(spec: str) -> tuple[str, np.ndarray]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"--trajectory expects NAME=FILE.npy, got {spec!r}")
    return name, np.load(path)


def main(argv: list[str] | None = None) -> Path:
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="OpenScene root (default $OPENSCENE_DATA_ROOT)")
    parser.add_argument("--split", required=True, help="log split under navsim_logs/, e.g. mini or test")
    parser.add_argument("--token", default=None, help="scene token (default: the split's first scene)")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--num-history-frames", type=int, default=4)
    parser.add_argument("--num-future-frames", type=int, default=10)
    parser.add_argument("--camera", default="cam_f0")
    parser.add_argument("--radius", type=float, default=40.0)
    parser.add_argument(
        "--trajectory",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="overlay a (T, 3) local trajectory saved with numpy.save; repeatable",
    )
    args = parser.parse_args(argv)
    trajectories = dict(_parse_trajectory(spec) for spec in args.trajectory)

    scene_filter = SceneFilter(
        num_history_frames=args.num_history_frames,
        num_future_frames=args.num_future_frames,
        frame_interval=1,  # any frame with enough history and future can be shown
        has_route=False,
        tokens=None if args.token is None else [args.token],
        max_scenes=1,
    )
    loader = SceneLoader(args.split, data_root=args.data_root, scene_filter=scene_filter)
    fig = render_scene(
        loader.get_scene(loader.tokens[0]), trajectories, camera=args.camera, radius=args.radius
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
