"""Road networks of the synthetic world and their map file.

Two layouts cover every scenario family: a *corridor* (one road, straight or curved, with an
oncoming roadblock) and a *junction* (four arms around a signalised four-way intersection). Both
are cut into roadblocks of parallel lanes, as in nuPlan, so a route is a list of roadblock ids.
Right-hand traffic: the lanes of a road's forward direction lie to the right of its reference line.
The network is built in a local frame; `to_map_json` writes it in global coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import Polygon
from shapely.ops import unary_union

from data_prep.world.paths import Path, arc_poses, hermite_poses, turn_poses
from navsim_adapter.geometry import local_to_global
from navsim_adapter.maps.base import MapLayer

MAP_FORMAT = "vla-dipole/synthetic-map"
MAP_VERSION = 1

WHITE, YELLOW = "white", "yellow"
SHOULDER = 0.8  # paved margin between the outer edge line and the curb [m]


@dataclass
class Lane:
    """A lane or lane connector (layer LANE / LANE_CONNECTOR)."""

    id: str
    layer: MapLayer
    roadblock_id: str
    path: Path
    width: float
    speed_limit: float
    incoming: list[str] = field(default_factory=list)
    outgoing: list[str] = field(default_factory=list)

    def polygon(self) -> np.ndarray:
        left, right = self.path.offset(self.width / 2), self.path.offset(-self.width / 2)
        return np.concatenate([left, right[::-1]])


@dataclass
class Block:
    """A roadblock (parallel lanes of one direction) or a roadblock connector (through a junction)."""

    id: str
    layer: MapLayer
    lane_ids: list[str]
    polygon: np.ndarray


@dataclass
class Road:
    """One road: forward lanes right of `ref`, backward (oncoming) lanes left of it, cut in segments.

    `fwd[i]` lists lane ids of forward lane i (0 = next to the centre line) segment by segment in
    driving order; `bwd[j]` likewise for backward lanes, also in their own driving order.
    """

    name: str
    ref: Path
    nf: int
    nb: int
    width: float
    fwd: list[list[str]] = field(default_factory=list)
    bwd: list[list[str]] = field(default_factory=list)
    fwd_blocks: list[str] = field(default_factory=list)
    bwd_blocks: list[str] = field(default_factory=list)


@dataclass
class TrafficLight:
    """A signal head for one junction arm; every connector leaving that arm follows it."""

    arm: str
    group: str
    position: np.ndarray  # (3,) local x, y, z of the head
    facing: float  # heading the lamps face (towards incoming traffic)
    connector_ids: list[str] = field(default_factory=list)


@dataclass
class RoadNetwork:
    lanes: dict[str, Lane] = field(default_factory=dict)
    blocks: dict[str, Block] = field(default_factory=dict)
    roads: dict[str, Road] = field(default_factory=dict)
    intersections: list[tuple[str, np.ndarray]] = field(default_factory=list)
    crosswalks: list[tuple[str, np.ndarray]] = field(default_factory=list)
    walkways: list[tuple[str, np.ndarray]] = field(default_factory=list)
    lights: list[TrafficLight] = field(default_factory=list)
    # connectors[(arm_in, arm_out)] = [(connector id, incoming lane index, outgoing lane index)]
    connectors: dict[tuple[str, str], list[tuple[str, int, int]]] = field(default_factory=dict)
    markings: list[tuple[np.ndarray, str]] = field(default_factory=list)  # ground strips (M, 2) + colour
    curbs: list[np.ndarray] = field(default_factory=list)  # road edges (N, 2)
    # red_intervals[group] = [(t0, t1), ...] seconds during which that signal group is red
    red_intervals: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _next_id: int = 10000

    def new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def path_of(self, lane_ids: list[str]) -> Path:
        return Path.concat([self.lanes[i].path for i in lane_ids])

    def is_red(self, connector_or_group: str, t: float) -> bool:
        group = self.light_group(connector_or_group) or connector_or_group
        return any(t0 <= t < t1 for t0, t1 in self.red_intervals.get(group, []))

    def light_group(self, connector_id: str) -> str | None:
        for light in self.lights:
            if connector_id in light.connector_ids:
                return light.group
        return None

    def traffic_light_states(self, t: float) -> list[tuple[str, bool]]:
        """(lane connector id, is_red) for every signalised connector, as OpenScene frames list them."""
        return [(c, self.is_red(light.group, t)) for light in self.lights for c in light.connector_ids]

    def to_map_json(self, map_name: str, origin: np.ndarray) -> dict:
        """The map file (documented in docs/synthetic_world.md), in global coordinates."""

        def xy(points: np.ndarray) -> list[list[float]]:
            g = local_to_global(np.asarray(points)[:, :2], origin)
            return np.round(g, 3).tolist()

        def lane_entry(lane: Lane) -> dict:
            base = local_to_global(lane.path.poses, origin)
            return {
                "id": lane.id,
                "polygon": xy(lane.polygon()),
                "baseline": np.round(base, 4).tolist(),
                "roadblock_id": lane.roadblock_id,
                "width": round(lane.width, 3),
                "speed_limit_mps": round(lane.speed_limit, 3),
                "incoming_ids": list(lane.incoming),
                "outgoing_ids": list(lane.outgoing),
            }

        layers: dict[str, list[dict]] = {layer.value: [] for layer in MapLayer}
        for lane in self.lanes.values():
            layers[lane.layer.value].append(lane_entry(lane))
        for block in self.blocks.values():
            layers[block.layer.value].append(
                {"id": block.id, "polygon": xy(block.polygon), "lane_ids": block.lane_ids}
            )
        for layer, items in (
            (MapLayer.INTERSECTION, self.intersections),
            (MapLayer.CROSSWALK, self.crosswalks),
            (MapLayer.WALKWAYS, self.walkways),
        ):
            layers[layer.value].extend({"id": i, "polygon": xy(p)} for i, p in items)
        lights = []
        for light in self.lights:
            pos = local_to_global(light.position[:2], origin)
            lights.append(
                {
                    "position": np.round([*pos, light.position[2]], 3).tolist(),
                    "lane_connector_ids": list(light.connector_ids),
                }
            )
        return {
            "format": MAP_FORMAT,
            "version": MAP_VERSION,
            "map_name": map_name,
            "layers": layers,
            "traffic_lights": lights,
        }


def _segment_bounds(length: float, seg_len: float) -> list[tuple[float, float]]:
    n = max(1, int(round(length / seg_len)))
    edges = np.linspace(0.0, length, n + 1)
    return list(zip(edges[:-1], edges[1:], strict=True))


def _strip(path: Path, d_left: float, d_right: float) -> np.ndarray:
    return np.concatenate([path.offset(d_left), path.offset(d_right)[::-1]])


def _dashes(
    path: Path, d: float, dash: float = 3.0, gap: float = 6.0, half_w: float = 0.075
) -> list[np.ndarray]:
    out = []
    for s0 in np.arange(1.0, path.length - dash, dash + gap):
        out.append(_strip(path.slice(s0, s0 + dash, step=dash), d + half_w, d - half_w))
    return out


def add_road(
    net: RoadNetwork,
    name: str,
    ref: Path,
    nf: int,
    nb: int,
    width: float,
    speed: float,
    seg_len: float = 60.0,
    sidewalk: float = 2.5,
) -> Road:
    """Cut `ref` into roadblocks of `nf` forward and `nb` backward lanes, with markings and curbs.

    Each direction's roadblock also covers a paved `SHOULDER` beyond its outer edge line, as real
    roadblocks cover the road surface between the curbs.
    """
    right_edge, left_edge = -nf * width - SHOULDER, nb * width + SHOULDER
    road = Road(name, ref, nf, nb, width, fwd=[[] for _ in range(nf)], bwd=[[] for _ in range(nb)])
    bwd_blocks_rev: list[str] = []
    bwd_rev: list[list[str]] = [[] for _ in range(nb)]
    for s0, s1 in _segment_bounds(ref.length, seg_len):
        seg = ref.slice(s0, s1)
        if nf:
            block_id, ids = net.new_id(), []
            for i in range(nf):
                lane = Lane(
                    net.new_id(),
                    MapLayer.LANE,
                    block_id,
                    Path(_offset_poses(seg, -(i + 0.5) * width)),
                    width,
                    speed,
                )
                net.lanes[lane.id] = lane
                ids.append(lane.id)
                road.fwd[i].append(lane.id)
            net.blocks[block_id] = Block(block_id, MapLayer.ROADBLOCK, ids, _strip(seg, 0.0, right_edge))
            road.fwd_blocks.append(block_id)
        if nb:
            block_id, ids = net.new_id(), []
            for j in range(nb):
                lane_path = Path(_offset_poses(seg, (j + 0.5) * width)).reversed()
                lane = Lane(net.new_id(), MapLayer.LANE, block_id, lane_path, width, speed)
                net.lanes[lane.id] = lane
                ids.append(lane.id)
                bwd_rev[j].append(lane.id)
            net.blocks[block_id] = Block(block_id, MapLayer.ROADBLOCK, ids, _strip(seg, left_edge, 0.0))
            bwd_blocks_rev.append(block_id)
        # markings: dashed between same-direction lanes, yellow centre line, white edges
        for i in range(1, nf):
            net.markings.extend((d, WHITE) for d in _dashes(seg, -i * width))
        for j in range(1, nb):
            net.markings.extend((d, WHITE) for d in _dashes(seg, j * width))
        if nf and nb:
            net.markings.append((_strip(seg, 0.12, -0.12), YELLOW))
        net.markings.append((_strip(seg, -nf * width + 0.075, -nf * width - 0.075), WHITE))
        net.markings.append((_strip(seg, nb * width + 0.075, nb * width - 0.075), WHITE))
        net.curbs.append(seg.offset(right_edge))
        net.curbs.append(seg.offset(left_edge))
        if sidewalk > 0:
            net.walkways.append((net.new_id(), _strip(seg, right_edge, right_edge - sidewalk)))
            net.walkways.append((net.new_id(), _strip(seg, left_edge + sidewalk, left_edge)))
    road.bwd = [list(reversed(ids)) for ids in bwd_rev]
    road.bwd_blocks = list(reversed(bwd_blocks_rev))
    for chains in (road.fwd, road.bwd):
        for chain in chains:
            _link(net, chain)
    net.roads[name] = road
    return road


def _offset_poses(path: Path, d: float) -> np.ndarray:
    return np.column_stack([path.offset(d), path.poses[:, 2]])


def _link(net: RoadNetwork, chain: list[str]) -> None:
    for a, b in zip(chain[:-1], chain[1:], strict=True):
        net.lanes[a].outgoing.append(b)
        net.lanes[b].incoming.append(a)


def build_corridor(
    length: float,
    nf: int,
    nb: int,
    width: float,
    speed: float,
    curvature: float = 0.0,
    straight_lead: float = 40.0,
) -> RoadNetwork:
    """One road of `length` metres; with `curvature` != 0 it bends after a straight lead-in, then
    straightens (constant-curvature pieces, no clothoids: enough for the tracking controller)."""
    if curvature:
        bend = min(length - straight_lead, np.pi / 2 / abs(curvature))
        pieces = [(straight_lead, 0.0), (bend, curvature)]
        if length - straight_lead - bend > 1:
            pieces.append((length - straight_lead - bend, 0.0))
    else:
        pieces = [(length, 0.0)]
    net = RoadNetwork()
    add_road(net, "main", Path(arc_poses((0.0, 0.0, 0.0), pieces)), nf, nb, width, speed)
    return net


ARM_ANGLES = {"S": -np.pi / 2, "E": 0.0, "N": np.pi / 2, "W": np.pi}
ARM_GROUP = {"S": "NS", "N": "NS", "E": "EW", "W": "EW"}


def turn_of(arm_in: str, arm_out: str) -> str:
    """'left' / 'straight' / 'right' for traffic entering from `arm_in` and leaving by `arm_out`."""
    rel = (ARM_ANGLES[arm_out] - (ARM_ANGLES[arm_in] + np.pi) + np.pi) % (2 * np.pi) - np.pi
    return "straight" if abs(rel) < 0.1 else ("left" if rel > 0 else "right")


def build_junction(
    arm_length: dict[str, float], nf: int, nb: int, width: float, speed: float, turn_speed: float = 8.0
) -> RoadNetwork:
    """A signalised four-way junction centred at the origin; arm 'S' comes from the south.

    Each arm's forward lanes lead *into* the junction (incoming), its backward lanes away from it.
    Connectors: straight lane i -> lane i, left from the innermost lane, right from the outermost.
    """
    net = RoadNetwork()
    half = max(nf, nb) * width + 8.0  # right turns get a radius of >= 8 m + half a lane
    for arm, phi in ARM_ANGLES.items():
        length = arm_length[arm]
        start = ((half + length) * np.cos(phi), (half + length) * np.sin(phi), phi + np.pi)
        add_road(net, arm, Path(arc_poses(start, [(length, 0.0)])), nf, nb, width, speed)
    square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    net.intersections.append((net.new_id(), square))
    for arm_in in ARM_ANGLES:
        road_in = net.roads[arm_in]
        light_conns: list[str] = []
        for arm_out in ARM_ANGLES:
            if arm_out == arm_in:
                continue
            road_out = net.roads[arm_out]
            turn = turn_of(arm_in, arm_out)
            if turn == "straight":
                pairs = [(i, min(i, nb - 1)) for i in range(nf)]
            elif turn == "left":
                pairs = [(0, 0)]
            else:
                pairs = [(nf - 1, nb - 1)]
            block_id, conns, polys = net.new_id(), [], []
            for i, j in pairs:
                a, b = net.lanes[road_in.fwd[i][-1]], net.lanes[road_out.bwd[j][0]]
                if turn == "straight":
                    poses = hermite_poses(a.path.poses[-1], b.path.poses[0])
                else:
                    poses = turn_poses(a.path.poses[-1], b.path.poses[0])
                lane_speed = speed if turn == "straight" else turn_speed
                conn = Lane(
                    net.new_id(),
                    MapLayer.LANE_CONNECTOR,
                    block_id,
                    Path(poses),
                    width,
                    lane_speed,
                    [a.id],
                    [b.id],
                )
                net.lanes[conn.id] = conn
                a.outgoing.append(conn.id)
                b.incoming.append(conn.id)
                conns.append((conn.id, i, j))
                polys.append(Polygon(conn.polygon()))
            union = unary_union(polys)
            if union.geom_type != "Polygon":
                union = union.convex_hull
            net.blocks[block_id] = Block(
                block_id,
                MapLayer.ROADBLOCK_CONNECTOR,
                [c for c, _, _ in conns],
                np.asarray(union.exterior.coords)[:-1],
            )
            net.connectors[(arm_in, arm_out)] = conns
            light_conns.extend(c for c, _, _ in conns)
        end = road_in.ref.poses[-1]
        side = end[:2] + (nf * width + SHOULDER + 1.0) * np.array([np.sin(end[2]), -np.cos(end[2])])
        net.lights.append(
            TrafficLight(
                arm_in,
                ARM_GROUP[arm_in],
                np.array([side[0], side[1], 0.0]),
                facing=float(end[2] + np.pi),
                connector_ids=light_conns,
            )
        )
    return net


def add_crosswalk(net: RoadNetwork, road: Road, s: float, depth: float = 4.0) -> np.ndarray:
    """A crosswalk across the whole road at arc length `s`; returns its polygon and adds stripes."""
    seg = road.ref.slice(s - depth / 2, s + depth / 2, step=depth / 4)
    left, right = road.nb * road.width + SHOULDER, -road.nf * road.width - SHOULDER
    poly = _strip(seg, left, right)
    net.crosswalks.append((net.new_id(), poly))
    for d in np.arange(right + 0.4, left - 0.4, 1.0):
        net.markings.append((_strip(seg, d + 0.5, d), WHITE))
    return poly
