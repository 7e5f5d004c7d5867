"""The BEV plot puts map, agents and trajectories where the scene says, and the CLI writes a picture."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from shapely.geometry import Polygon

from navsim_adapter.evaluation.visualize import main, plot_scene, to_plot
from navsim_adapter.geometry import global_to_local, local_to_global
from navsim_adapter.maps.base import LaneLike, MapAPI, MapLayer, MapObject
from navsim_adapter.scene_loader import SceneFilter, SceneLoader


class SquareMap(MapAPI):
    """A tiny real MapAPI: one roadblock square and one lane ahead of a given global pose."""

    def __init__(self, origin: np.ndarray) -> None:
        corners = local_to_global(np.array([[-5.0, -5.0], [25.0, -5.0], [25.0, 5.0], [-5.0, 5.0]]), origin)
        baseline = local_to_global(np.column_stack([np.linspace(0, 20, 5), np.zeros(5), np.zeros(5)]), origin)
        self.roadblock = MapObject("rb1", MapLayer.ROADBLOCK, Polygon(corners))
        self.lane_obj = LaneLike(
            "lane1", MapLayer.LANE, Polygon(corners).buffer(-2), baseline=baseline, roadblock_id="rb1"
        )
        self.far = MapObject("far", MapLayer.ROADBLOCK, Polygon(corners + 5_000.0))

    @property
    def map_name(self) -> str:
        return "square"

    def objects(self, layer: MapLayer) -> list[MapObject]:
        return {MapLayer.ROADBLOCK: [self.roadblock, self.far], MapLayer.LANE: [self.lane_obj]}.get(layer, [])

    def lane(self, lane_id: str) -> LaneLike:
        return self.lane_obj


@pytest.fixture
def scene(arc_split):
    root, _ = arc_split
    loader = SceneLoader("mini", data_root=root)
    return loader.get_scene(loader.tokens[0])


def _lines(ax, label):
    return [line for line in ax.get_lines() if line.get_label() == label]


def test_trajectories_and_agents_are_drawn_in_the_local_frame(scene):
    ax = Figure().subplots()
    candidate = np.column_stack([np.arange(1, 9) * 2.0, np.linspace(0, 3, 8), np.zeros(8)])
    plot_scene(scene, ax, {"candidate": candidate}, map_api=None)
    (human,) = _lines(ax, "human")
    np.testing.assert_allclose(human.get_xydata(), to_plot(scene.get_future_trajectory()[:, :2]))
    (cand,) = _lines(ax, "candidate")
    np.testing.assert_allclose(cand.get_xydata()[1:], np.column_stack([-candidate[:, 1], candidate[:, 0]]))
    np.testing.assert_allclose(_lines(ax, "ego history")[0].get_xydata()[-1], [0.0, 0.0], atol=1e-9)
    agents = {p.get_gid(): p for p in ax.patches if str(p.get_gid()).startswith("agent:")}
    assert set(agents) == {f"agent:{t}" for t in scene.current_frame.annotations.track_tokens}
    box = scene.current_frame.annotations.boxes[0]  # vehicle 10 m ahead, 2 m to the right
    np.testing.assert_allclose(agents["agent:track0"].get_xy()[:4].mean(axis=0), [-box[1], box[0]], atol=1e-9)
    ego = next(p for p in ax.patches if p.get_gid() == "ego").get_xy()[:4]
    # Pacifica footprint around the rear axle: 4.049 m ahead, 1.127 m behind, 1.1485 m to each side
    np.testing.assert_allclose([ego[:, 1].max(), ego[:, 1].min(), ego[:, 0].max()], [4.049, -1.127, 1.1485])
    with pytest.raises(ValueError, match="'bad' must be"):
        plot_scene(scene, Figure().subplots(), {"bad": np.zeros(8)}, map_api=None)


def test_map_polygons_are_transformed_into_the_ego_frame(scene):
    origin = scene.current_frame.ego_status.ego_pose
    ax = Figure().subplots()
    plot_scene(scene, ax, map_api=SquareMap(origin))
    patches = {p.get_gid(): p for p in ax.patches}
    assert "map:far" not in patches  # outside the plotted radius
    xy = patches["map:rb1"].get_xy()
    expected = to_plot(
        global_to_local(np.asarray(SquareMap(origin).roadblock.polygon.exterior.coords), origin)
    )
    np.testing.assert_allclose(xy[: len(expected)], expected, atol=1e-6)
    assert "map:lane1" in patches


def test_cli_writes_bev_and_camera_png(arc_split, tmp_path):
    root, logs = arc_split
    token = SceneLoader(
        "mini", data_root=root, scene_filter=SceneFilter(log_names=[logs[2].log_name])
    ).tokens[0]
    np.save(tmp_path / "straight.npy", np.column_stack([np.arange(1, 9) * 3.0, np.zeros((8, 2))]))
    out = main(
        [
            "--data-root",
            str(root),
            "--split",
            "mini",
            "--token",
            token,
            "--out",
            str(tmp_path / "bev" / "scene.png"),
            "--trajectory",
            f"straight={tmp_path / 'straight.npy'}",
        ]
    )
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (600, 1400, 3)
    right = image[100:500, 800:1300].reshape(-1, 3)
    # the camera half shows the written image (green channel = camera index 0 -> 0, red = frame value)
    assert (np.abs(right.astype(int) - [(3 * 7) % 256, 0, (3 * 7) % 256]).sum(axis=1) < 6).mean() > 0.9
    left = image[50:550, 50:650].reshape(-1, 3)
    assert ((left[:, 0] > 180) & (left[:, 1] < 100)).sum() > 50  # the red ego box
