"""ScoringContext from our Scene + MapAPI, reproducing what NAVSIM's metric caching extracts.

- agents: 2 Hz annotations (ego frame) -> global, interpolated to 10 Hz over 0..4 s the way the
  metric cache does (linear, unwrapped heading; a track seen once is held for the whole horizon),
  then 4..5 s from the following frames for the TTC look-ahead;
- map: roadblocks, their lanes, lane connectors of roadblock connectors, intersections and car
  parks within 100 m of the ego centre (PDMDrivableMap.from_simulation);
- route: lanes of the current frame's roadblock ids; centreline: chained on-route lane baselines;
- red lights: on-route lane connectors reported red at 2 Hz, held for 5 steps;
- past: the three past frames sampled at 0.1 s like NAVSIM's history comfort;
- reference: the PDM-Closed-style planner in `reference_planner`.
"""

from __future__ import annotations

import numpy as np

from navsim_adapter.geometry import local_to_global, normalize_angle, rotate, wrap_angle
from navsim_adapter.maps.base import LaneLike, MapAPI, MapLayer
from navsim_adapter.pdm.context import AGENT_STEPS, AGENT_TYPES, OBJECT_TYPES, ScoringContext
from navsim_adapter.pdm.geometry import PACIFICA, ego_center
from navsim_adapter.pdm.simulation import NUM_STEPS, STATE_DIM

MAP_RADIUS = 100.0
STEPS_PER_FRAME = 5  # 0.5 s frames -> 0.1 s steps
CENTERLINE_LENGTH = 200.0


def _track_table(scene, frames: range) -> dict[str, dict]:
    """Per track token: type, size and global (t, x, y, heading, vx, vy) rows over `frames`."""
    tracks: dict[str, dict] = {}
    c = scene.metadata.num_history_frames - 1
    for fi in frames:
        frame = scene.frames[fi]
        ann = frame.annotations
        if not len(ann):
            continue
        pose = frame.ego_status.ego_pose
        boxes = np.asarray(ann.boxes, dtype=np.float64)
        glob = local_to_global(boxes[:, [0, 1, 6]], pose, wrap=normalize_angle)
        gvel = rotate(np.asarray(ann.velocity_3d, dtype=np.float64)[:, :2], pose[2])
        for j, tok in enumerate(ann.track_tokens):
            kind = ann.names[j] if ann.names[j] in OBJECT_TYPES else "generic_object"
            v = gvel[j] if kind in AGENT_TYPES else np.zeros(2)
            row = [(fi - c) * 0.5, glob[j, 0], glob[j, 1], glob[j, 2], v[0], v[1]]
            entry = tracks.setdefault(tok, {"type": kind, "size": boxes[j, 3:5], "rows": []})
            entry["rows"].append(row)
    return tracks


def _interpolate(rows: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """States (len(times), 5) x, y, heading, vx, vy and validity, NAVSIM's StateInterpolator rules."""
    t = rows[:, 0]
    vals = rows[:, 1:].copy()
    vals[:, 2] = np.unwrap(vals[:, 2])
    if len(t) == 1:  # a single sighting is repeated at every step
        return np.repeat(vals, len(times), axis=0), np.ones(len(times), dtype=bool)
    valid = (times >= t[0]) & (times <= t[-1])
    out = np.stack([np.interp(times, t, vals[:, i]) for i in range(5)], -1)
    out[:, 2] = normalize_angle(out[:, 2])
    return out, valid


def agent_arrays(scene) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, types, boxes [T, M, 5], velocity [T, M, 2], valid [T, M]) at 10 Hz, T = 51."""
    c = scene.metadata.num_history_frames - 1
    last = len(scene.frames) - 1
    horizon = c + NUM_STEPS // STEPS_PER_FRAME
    if horizon > last:
        raise ValueError(
            f"scene {scene.token}: needs {NUM_STEPS // STEPS_PER_FRAME} future frames for scoring, "
            f"has {last - c}"
        )
    times = np.arange(AGENT_STEPS) * 0.1
    main = _track_table(scene, range(c, horizon + 1))
    extended = _track_table(scene, range(c, min(last, c + AGENT_STEPS // STEPS_PER_FRAME) + 1))
    tokens = list(main) + [k for k in extended if k not in main]
    m = len(tokens)
    boxes = np.zeros((AGENT_STEPS, m, 5))
    vel = np.zeros((AGENT_STEPS, m, 2))
    valid = np.zeros((AGENT_STEPS, m), dtype=bool)
    types = []
    head = NUM_STEPS + 1
    for j, tok in enumerate(tokens):
        src = main.get(tok, extended[tok])
        types.append(src["type"])
        boxes[:, j, 3:5] = src["size"]
        if tok in main:
            st, ok = _interpolate(np.array(main[tok]["rows"]), times[:head])
            boxes[:head, j, :3], vel[:head, j], valid[:head, j] = st[:, :3], st[:, 3:], ok
        st, ok = _interpolate(np.array(extended[tok]["rows"]), times[head:])
        boxes[head:, j, :3], vel[head:, j], valid[head:, j] = st[:, :3], st[:, 3:], ok
    return tokens, types, boxes, vel, valid


def drivable_map(map_api: MapAPI, center_xy: np.ndarray) -> tuple[list[str], list[str], list]:
    """Drivable-area map around the ego centre, layered like NAVSIM's PDMDrivableMap."""
    ids, layers, polys = [], [], []
    blocks = map_api.objects_near(center_xy, MAP_RADIUS, (MapLayer.ROADBLOCK,))
    connectors = map_api.objects_near(center_xy, MAP_RADIUS, (MapLayer.ROADBLOCK_CONNECTOR,))
    for b in blocks:
        ids.append(b.id), layers.append("ROADBLOCK"), polys.append(b.polygon)
    for parents, lane_layer, layer_name in (
        (blocks, MapLayer.LANE, "LANE"),
        (connectors, MapLayer.LANE_CONNECTOR, "LANE_CONNECTOR"),
    ):
        wanted = {p.id for p in parents}
        for lane in map_api.objects(lane_layer):
            if isinstance(lane, LaneLike) and lane.roadblock_id in wanted:
                ids.append(lane.id), layers.append(layer_name), polys.append(lane.polygon)
    for layer in (MapLayer.INTERSECTION, MapLayer.CARPARK_AREA):
        for o in map_api.objects_near(center_xy, MAP_RADIUS, (layer,)):
            ids.append(o.id), layers.append(layer.value), polys.append(o.polygon)
    return ids, layers, polys


def route_centerline(map_api: MapAPI, route_lanes: list[LaneLike], rear_axle: np.ndarray) -> np.ndarray:
    """(P, 3) centreline: the on-route lane nearest the ego, chained forward through on-route successors."""
    if not route_lanes:
        raise ValueError("no on-route lanes: the scene's roadblock_ids match no lane of the map")
    by_id = {lane.id: lane for lane in route_lanes}

    def dist(lane: LaneLike) -> float:
        d = np.hypot(*(lane.baseline[:, :2] - rear_axle[:2]).T)
        return float(d.min()) if len(d) else np.inf

    lane = min(route_lanes, key=dist)
    parts, length, seen = [np.asarray(lane.baseline, dtype=np.float64)], 0.0, {lane.id}
    while length < CENTERLINE_LENGTH:
        nxt = [by_id[i] for i in lane.outgoing_ids if i in by_id and i not in seen]
        if not nxt:
            break
        lane = nxt[0]
        seen.add(lane.id)
        parts.append(np.asarray(lane.baseline, dtype=np.float64))
        length += float(np.hypot(*np.diff(parts[-1][:, :2], axis=0).T).sum())
    line = np.concatenate(parts)
    keep = np.concatenate([[True], np.hypot(*np.diff(line[:, :2], axis=0).T) > 1e-6])
    return line[keep]


def past_states(scene) -> np.ndarray | None:
    """Logged ego states of the past frames sampled at 0.1 s, [start, end) minus the last sample."""
    c = scene.metadata.num_history_frames - 1
    frames = scene.frames[:c]
    if len(frames) < 2:
        return None
    t_us = np.array([f.timestamp for f in frames], dtype=np.int64)
    knots = np.array(
        [[*f.ego_status.ego_pose, *f.ego_status.ego_velocity, *f.ego_status.ego_acceleration] for f in frames]
    )
    knots[:, 2] = np.unwrap(knots[:, 2])
    query = np.arange(t_us[0], t_us[-1], 100_000, dtype=np.int64)[:-1]
    out = np.zeros((len(query), STATE_DIM))
    for i, col in enumerate((0, 1, 2, 3, 4, 5, 6)):
        out[:, col] = np.interp(query.astype(np.float64), t_us.astype(np.float64), knots[:, i])
    out[:, 2] = wrap_angle(out[:, 2])
    return out


def build_context(scene, map_api: MapAPI | None = None, *, reference: bool = True) -> ScoringContext:
    """ScoringContext of a Scene (its `map_api` unless one is given); `reference=False` keeps a
    constant-velocity stand-in instead of running the PDM-Closed-style planner."""
    from navsim_adapter.pdm.reference_planner import constant_velocity_reference, plan_reference

    map_api = map_api if map_api is not None else scene.map_api
    cur = scene.current_frame
    c = scene.metadata.num_history_frames - 1
    st = cur.ego_status
    ego = np.zeros(STATE_DIM)
    ego[:3] = st.ego_pose
    ego[3:5] = st.ego_velocity
    ego[5:7] = st.ego_acceleration

    tokens, types, boxes, vel, valid = agent_arrays(scene)
    ids, layers, polys = drivable_map(map_api, ego_center(ego[:3], PACIFICA))
    route_lanes = map_api.lanes_of_roadblocks(list(cur.roadblock_ids))
    route_ids = [lane.id for lane in route_lanes]
    try:
        centerline = route_centerline(map_api, route_lanes, ego[:3])
    except ValueError as err:
        raise ValueError(
            f"scene {scene.token} (map {map_api.map_name}, roadblock_ids {list(cur.roadblock_ids)[:5]}): "
            f"{err}"
        ) from err

    # Red lights (on-route connectors), 2 Hz status held for 5 steps.
    connectors = {lane.id: lane for lane in route_lanes if lane.layer == MapLayer.LANE_CONNECTOR}
    red_ids: list[str] = []
    active_rows = []
    for s in range(AGENT_STEPS):
        fi = min(c + s // STEPS_PER_FRAME, len(scene.frames) - 1)
        red = {str(i) for i, is_red in scene.frames[fi].traffic_lights if is_red and str(i) in connectors}
        red_ids += sorted(red - set(red_ids))
        active_rows.append(red)
    active = np.array([[i in row for i in red_ids] for row in active_rows], dtype=bool).reshape(
        AGENT_STEPS, len(red_ids)
    )

    ctx = ScoringContext(
        token=scene.token,
        timestamp_us=int(cur.timestamp),
        ego_state=ego,
        agent_tokens=tokens,
        agent_types=types,
        agent_boxes=boxes,
        agent_velocity=vel,
        agent_valid=valid,
        map_ids=ids,
        map_layers=layers,
        map_polygons=polys,
        route_lane_ids=route_ids,
        centerline=centerline,
        reference_poses=constant_velocity_reference(ego),
        red_light_ids=red_ids,
        red_light_polygons=[connectors[i].polygon for i in red_ids],
        red_light_active=active,
        human_trajectory=scene.get_future_trajectory(8),
        past_states=past_states(scene),
        log_name=scene.metadata.log_name,
    )
    if reference:
        speed_limits = [lane.speed_limit_mps for lane in route_lanes if lane.speed_limit_mps]
        ctx.reference_poses = plan_reference(ctx, speed_limit=max(speed_limits) if speed_limits else None)
    return ctx
