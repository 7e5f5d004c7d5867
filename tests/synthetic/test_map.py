"""SyntheticMap: the written map file through MapAPI, and clear errors for missing or broken files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import Point
from shapely.ops import unary_union

from navsim_adapter.maps import MapAPI, MapFormatError, MapLayer, SyntheticMap, load_map
from navsim_adapter.maps.base import DRIVABLE_LAYERS, LaneLike


def _first(split, family):
    log = next(p for p in split.logs if family in p.stem)
    truth = split.truth(log)
    return load_map(truth["map_name"], split.root), truth


def test_every_driven_pose_is_on_the_drivable_area_and_near_the_route(synthetic_split):
    """The (noisy) logged driver stays on the road and within reach of its route lanes."""
    for log in synthetic_split.logs:
        truth = synthetic_split.truth(log)
        m = load_map(truth["map_name"], synthetic_split.root)
        drivable = unary_union([o.polygon for layer in DRIVABLE_LAYERS for o in m.objects(layer)])
        route_lanes = m.lanes_of_roadblocks(truth["route_roadblock_ids"])
        assert route_lanes and {lane.roadblock_id for lane in route_lanes} == set(
            truth["route_roadblock_ids"]
        )
        route = unary_union([lane.polygon for lane in route_lanes])
        for x, y, _ in truth["ego_poses_global"]:
            assert drivable.contains(Point(x, y)), (log.stem, x, y)
            assert route.buffer(1.5).contains(Point(x, y)), (log.stem, x, y)


def test_lanes_have_consistent_baselines_and_links(synthetic_split):
    m, _ = _first(synthetic_split, "intersection_turn")
    blocks = {
        o.id: o for layer in (MapLayer.ROADBLOCK, MapLayer.ROADBLOCK_CONNECTOR) for o in m.objects(layer)
    }
    for layer in (MapLayer.LANE, MapLayer.LANE_CONNECTOR):
        lanes = m.objects(layer)
        assert lanes and all(isinstance(lane, LaneLike) for lane in lanes)
        for lane in lanes:
            assert lane.roadblock_id in blocks
            expected_parent = MapLayer.ROADBLOCK if layer == MapLayer.LANE else MapLayer.ROADBLOCK_CONNECTOR
            assert blocks[lane.roadblock_id].layer == expected_parent
            inside = [lane.polygon.buffer(1e-3).contains(Point(x, y)) for x, y, _ in lane.baseline]
            assert all(inside), lane.id
            step = np.diff(lane.baseline[:, :2], axis=0)
            heading = np.arctan2(step[:, 1], step[:, 0])
            assert np.abs(np.angle(np.exp(1j * (heading - lane.baseline[:-1, 2])))).max() < 0.15
            assert lane.speed_limit_mps and lane.speed_limit_mps > 0
            for nxt in lane.outgoing_ids:  # successors start where this lane ends
                assert np.linalg.norm(m.lane(nxt).baseline[0, :2] - lane.baseline[-1, :2]) < 0.05
                assert lane.id in m.lane(nxt).incoming_ids
    assert len(m.objects(MapLayer.INTERSECTION)) == 1
    assert {layer for layer in MapLayer if m.objects(layer)} >= {
        MapLayer.LANE,
        MapLayer.LANE_CONNECTOR,
        MapLayer.ROADBLOCK,
        MapLayer.ROADBLOCK_CONNECTOR,
        MapLayer.INTERSECTION,
        MapLayer.WALKWAYS,
    }


def test_oncoming_roadblocks_point_the_other_way(synthetic_split):
    m, truth = _first(synthetic_split, "oncoming_traffic")
    pose = np.array(truth["ego_poses_global"][0])
    route = set(truth["route_roadblock_ids"])
    nearby = [o for o in m.objects_near(pose[:2], 8.0, (MapLayer.LANE,)) if isinstance(o, LaneLike)]
    off_route = [lane for lane in nearby if lane.roadblock_id not in route]
    assert off_route, "an oncoming lane next to the ego"
    for lane in off_route:
        k = np.argmin(np.linalg.norm(lane.baseline[:, :2] - pose[:2], axis=1))
        assert abs(np.angle(np.exp(1j * (lane.baseline[k, 2] - pose[2])))) > 2.5


def test_traffic_lights_refer_to_connectors_and_turn_red(synthetic_split):
    import pickle

    log = next(p for p in synthetic_split.logs if "red_light" in p.stem)
    m = load_map(synthetic_split.truth(log)["map_name"], synthetic_split.root)
    frames = pickle.loads(log.read_bytes())
    assert frames[0]["traffic_lights"]
    red_at_start = m.red_lane_connectors(frames[0]["traffic_lights"])
    assert red_at_start and all(c.layer == MapLayer.LANE_CONNECTOR for c in red_at_start)
    route_connectors = {
        c.id for c in m.lanes_of_roadblocks(frames[0]["roadblock_ids"]) if c.layer == MapLayer.LANE_CONNECTOR
    }
    assert route_connectors & {c.id for c in red_at_start}, "the ego starts facing a red light"
    assert set(m.traffic_light_connectors) == {cid for cid, _ in frames[0]["traffic_lights"]}


def test_objects_near_matches_the_base_implementation(synthetic_split):
    m, truth = _first(synthetic_split, "intersection_turn")
    layers = (MapLayer.LANE, MapLayer.LANE_CONNECTOR, MapLayer.INTERSECTION)
    for x, y, _ in truth["ego_poses_global"][::5]:
        fast = m.objects_near(np.array([x, y]), 15.0, layers)
        slow = MapAPI.objects_near(m, np.array([x, y]), 15.0, layers)
        assert [o.id for o in fast] == [o.id for o in slow] and fast


def test_missing_map_names_path_and_real_data_route(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_map("us-nv-las-vegas-strip", tmp_path)
    text = str(err.value)
    assert str(tmp_path / "synthetic_maps" / "us-nv-las-vegas-strip.json") in text
    assert "NUPLAN_MAPS_ROOT" in text and "metric" in text


def test_unknown_lane_is_a_keyerror_naming_it(synthetic_split):
    m, _ = _first(synthetic_split, "lane_follow_straight")
    with pytest.raises(KeyError, match="no-such-lane"):
        m.lane("no-such-lane")


@pytest.mark.parametrize(
    "corrupt, field",
    [
        (lambda d: d["layers"]["LANE"][0].pop("baseline"), "layers.LANE[0].baseline"),
        (
            lambda d: d["layers"]["ROADBLOCK"][1].__setitem__("polygon", [[0, 0], [1, 1]]),
            "layers.ROADBLOCK[1].polygon",
        ),
        (
            lambda d: d["layers"]["LANE"][2].__setitem__("speed_limit_mps", "fast"),
            "layers.LANE[2].speed_limit_mps",
        ),
        (lambda d: d.__setitem__("format", "geopackage"), "format"),
        (lambda d: d["layers"].__setitem__("ROADS", []), "layers"),
    ],
)
def test_broken_map_file_names_the_field(synthetic_split, tmp_path, corrupt, field):
    truth = synthetic_split.truth(synthetic_split.logs[0])
    data = json.loads((synthetic_split.root / "synthetic_maps" / f"{truth['map_name']}.json").read_text())
    corrupt(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MapFormatError) as err:
        SyntheticMap(path)
    assert str(path) in str(err.value) and field in str(err.value)
