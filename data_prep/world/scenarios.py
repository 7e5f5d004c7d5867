"""Scenario families: each builds a road network, the ego's route plan and the other agents.

Families (`FAMILIES`): lane following on straight and curved roads, a lead vehicle braking,
a stopped obstacle (lane change on two-lane roads, stop otherwise), turns at a signalised
junction chosen by the driving command, oncoming traffic, pedestrians crossing, and red lights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_prep.world.agents import (
    BARRIER,
    BICYCLE,
    CZONE_SIGN,
    GENERIC_OBJECT,
    SIZES,
    TRAFFIC_CONE,
    VEHICLE,
    Agent,
    Pedestrian,
    Static,
    StopLine,
    Vehicle,
)
from data_prep.world.driver import EGO_WIDTH, EgoState, RoutePlan
from data_prep.world.paths import Path
from data_prep.world.road import SHOULDER, RoadNetwork, add_crosswalk, build_corridor, build_junction, turn_of

FAMILIES = (
    "lane_follow_straight",
    "lane_follow_curve",
    "lead_vehicle_braking",
    "stopped_obstacle",
    "intersection_turn",
    "oncoming_traffic",
    "pedestrian_crossing",
    "red_light",
)

SPEED_LIMITS = (11.2, 13.4, 15.6)  # 25, 30, 35 mph
STOP_SETBACK = 4.0  # where queued cross traffic stops, before the junction edge [m]


@dataclass
class Scenario:
    family: str
    net: RoadNetwork
    plan: RoutePlan
    ego: EgoState
    agents: list[Agent]
    route_roadblocks: list[str]
    duration: float
    info: dict = field(default_factory=dict)


class _Tracks:
    """Sequential local track names; the writer turns them into tokens."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"agent-{self.n}"


def edge_room(lane_width: float) -> float:
    """How far the ego may drift towards the road edge while its footprint stays on the road."""
    return max(0.0, lane_width / 2 - EGO_WIDTH / 2 - 0.2)


def _vehicle(rng: np.random.Generator, track: str, path: Path, s: float, v0: float, **kw) -> Vehicle:
    size = (rng.uniform(4.2, 5.2), rng.uniform(1.8, 2.1), rng.uniform(1.45, 1.9))
    return Vehicle(track, path, s, v=kw.pop("v", v0), v0=v0, size=size, **kw)


def _roadside(
    rng: np.random.Generator,
    tracks: _Tracks,
    path: Path,
    offset: float,
    s_range: tuple[float, float],
    count: int,
) -> list[Agent]:
    """Cones, construction signs and generic objects on the sidewalk, for visual and class variety."""
    out: list[Agent] = []
    for _ in range(count):
        name = rng.choice([TRAFFIC_CONE, CZONE_SIGN, GENERIC_OBJECT])
        s = rng.uniform(*s_range)
        pose = path.at(s)
        xy = pose[:2] + offset * np.array([-np.sin(pose[2]), np.cos(pose[2])])
        out.append(Static(tracks(), np.array([*xy, pose[2]]), str(name), SIZES[str(name)]))
    return out


def _variant_choice(options: list, drawn, variant: int | None):
    """`drawn` (the random pick, always drawn so the random stream stays the same) unless a variant fixes it."""
    return drawn if variant is None else options[variant % len(options)]


def _corridor(family: str, rng: np.random.Generator, duration: float, variant: int | None) -> Scenario:
    speed = float(rng.choice(SPEED_LIMITS))
    width = float(rng.uniform(3.4, 3.8))
    nf = 2 if family == "stopped_obstacle" and rng.random() < 0.6 else int(rng.integers(1, 3))
    nb = int(rng.integers(1, 3))
    curvature = 0.0
    if family in ("lane_follow_curve", "oncoming_traffic"):
        sign = _variant_choice([1, -1], rng.choice([-1, 1]), variant)  # +1 curves left
        curvature = float(sign * rng.uniform(1 / 120, 1 / 45))
    s_start = 30.0
    length = s_start + speed * 1.15 * duration + 120.0
    net = build_corridor(
        length, nf, nb, width, speed, curvature=curvature, straight_lead=s_start + rng.uniform(20, 60)
    )
    road = net.roads["main"]
    lane = int(rng.integers(nf))
    order = [lane] + [i for i in range(nf) if i != lane]
    paths = [net.path_of(road.fwd[i]) for i in order]
    edge = edge_room(width)
    room = [(0.9, 0.9 if i < nf - 1 else edge) for i in order]
    plan = RoutePlan(paths=paths, speed_limit=speed, drift_room=room)
    p0 = paths[0].at(s_start)
    v_init = speed * rng.uniform(0.7, 1.0)
    ego = EgoState(float(p0[0]), float(p0[1]), float(p0[2]), v_init)
    tracks = _Tracks()
    agents: list[Agent] = []
    info: dict = {"lanes_forward": nf, "lanes_backward": nb, "start_lane": lane}
    oncoming = [net.path_of(road.bwd[j]) for j in range(nb)]
    ego_path = paths[0]

    n_oncoming = int(rng.integers(4, 8)) if family == "oncoming_traffic" else int(rng.integers(0, 3))
    for _ in range(n_oncoming):
        path = oncoming[int(rng.integers(nb))]
        s = rng.uniform(0.0, path.length * 0.8)
        agents.append(_vehicle(rng, tracks(), path, s, speed * rng.uniform(0.8, 1.05)))

    if family == "lead_vehicle_braking":
        gap = rng.uniform(18.0, 35.0)
        brake_at = rng.uniform(3.0, 9.0)
        stop = rng.random() < 0.5
        agents.append(
            _vehicle(
                rng,
                tracks(),
                ego_path,
                s_start + gap,
                speed * 0.85,
                v=v_init * 0.95,
                brake_at=brake_at,
                brake_to=0.0 if stop else speed * rng.uniform(0.2, 0.5),
                brake_decel=rng.uniform(2.5, 5.0),
                brake_until=brake_at + rng.uniform(4.0, 8.0),
            )
        )
        info["lead_brake_at"] = round(brake_at, 2)
    elif family == "stopped_obstacle":
        s_obs = s_start + rng.uniform(60.0, 100.0)
        pose = ego_path.at(s_obs)
        if rng.random() < 0.5:
            size = (rng.uniform(4.3, 5.0), rng.uniform(1.8, 2.0), rng.uniform(1.5, 1.8))
            agents.append(Static(tracks(), pose.copy(), VEHICLE, size))  # a parked / broken-down car
        else:  # a work zone: barrier with cones in front of it
            agents.append(Static(tracks(), pose.copy(), BARRIER, SIZES[BARRIER]))
            for k in (1, 2, 3):
                p = ego_path.at(s_obs - 3.0 * k)
                side = (k - 2) * 0.9
                xy = p[:2] + side * np.array([-np.sin(p[2]), np.cos(p[2])])
                agents.append(Static(tracks(), np.array([*xy, p[2]]), TRAFFIC_CONE, SIZES[TRAFFIC_CONE]))
        info["obstacle_s"] = round(s_obs - s_start, 2)
    elif family == "pedestrian_crossing":
        s_cross = s_start + rng.uniform(50.0, 80.0)
        add_crosswalk(net, road, s_cross)
        t_arrive = (s_cross - s_start) / v_init
        for k in range(int(rng.integers(1, 3))):
            from_right = rng.random() < 0.5
            pose = road.ref.at(s_cross + rng.uniform(-1.2, 1.2))
            left = np.array([-np.sin(pose[2]), np.cos(pose[2])])
            edge_r, edge_l = -nf * width - SHOULDER - 1.0, nb * width + SHOULDER + 1.0
            start = pose[:2] + (edge_r if from_right else edge_l) * left
            heading = float(pose[2] + (np.pi / 2 if from_right else -np.pi / 2))
            walk = rng.uniform(1.1, 1.6)
            to_ego_lane = (
                (abs(edge_r) - (lane + 0.5) * width) if from_right else (edge_l + (lane + 0.5) * width)
            )
            t_start = max(0.0, t_arrive - to_ego_lane / walk - rng.uniform(1.0, 3.0) + 1.5 * k)
            agents.append(Pedestrian(tracks(), start, heading, walk, t_start, distance=edge_l - edge_r))
        info["crossing_s"] = round(s_cross - s_start, 2)
    elif family == "lane_follow_straight" and nf == 2 and rng.random() < 0.6:
        other = paths[1]
        agents.append(
            _vehicle(
                rng,
                tracks(),
                other,
                s_start + rng.uniform(10, 40),
                speed * 0.6,
                name=BICYCLE if rng.random() < 0.4 else VEHICLE,
            )
        )
        if agents[-1].name == BICYCLE:
            agents[-1].size, agents[-1].v0, agents[-1].v = SIZES[BICYCLE], 5.0, 5.0
    if family in ("lane_follow_straight", "lane_follow_curve") and rng.random() < 0.5:
        agents.append(
            _vehicle(rng, tracks(), ego_path, s_start + rng.uniform(35, 60), speed * rng.uniform(0.85, 1.0))
        )
    agents += _roadside(
        rng, tracks, road.ref, -nf * width - SHOULDER - 1.2, (s_start, length - 20), int(rng.integers(1, 5))
    )
    return Scenario(family, net, plan, ego, agents, list(road.fwd_blocks), duration, info)


def _junction(family: str, rng: np.random.Generator, duration: float, variant: int | None) -> Scenario:
    speed = float(rng.choice(SPEED_LIMITS[:2]))
    width = float(rng.uniform(3.4, 3.7))
    nf, nb = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    to_junction = rng.uniform(45.0, 75.0)
    exit_length = speed * duration + 40.0
    arm_length = {"S": to_junction + 40.0, "N": exit_length, "E": exit_length, "W": exit_length}
    net = build_junction(arm_length, nf, nb, width, speed)
    # exit arm W / N / E = left / straight / right; with a variant the two junction families take
    # complementary exits, so any two consecutive variants drive all three commands
    if family == "intersection_turn":
        out_arm = str(_variant_choice(["W", "N", "E"], rng.choice(["W", "N", "E"]), variant))
    else:
        out_arm = str(_variant_choice(["N", "E", "W"], rng.choice(["N", "N", "W", "E"]), variant))
    turn = turn_of("S", out_arm)
    conns = net.connectors[("S", out_arm)]
    conn_id, i, j = conns[int(rng.integers(len(conns)))]
    s_in, s_out = net.roads["S"], net.roads[out_arm]
    lane_ids = s_in.fwd[i] + [conn_id] + s_out.bwd[j]
    path = net.path_of(lane_ids)
    s_conn0 = net.path_of(s_in.fwd[i]).length
    s_conn1 = s_conn0 + net.lanes[conn_id].path.length
    edge = edge_room(width)
    plan = RoutePlan(
        [path],
        stops=[(s_conn0, conn_id)],
        turn=turn,
        turn_span=(s_conn0, s_conn1),
        speed_limit=speed,
        drift_room=[(edge, edge)],
    )
    s_start = s_conn0 - to_junction
    p0 = path.at(s_start)
    v_init = speed * rng.uniform(0.7, 1.0)
    ego = EgoState(float(p0[0]), float(p0[1]), float(p0[2]), v_init)
    t_arrive = to_junction / v_init
    if family == "red_light":
        t_green = t_arrive + rng.uniform(2.0, 7.0)
        net.red_intervals = {"NS": [(0.0, t_green)], "EW": [(t_green - 2.0, np.inf)]}  # 2 s all-red
    else:
        net.red_intervals = {"NS": [], "EW": [(0.0, np.inf)]}
    tracks = _Tracks()
    agents: list[Agent] = []

    def through(arm_in: str, arm_out: str, lane: int = 0) -> tuple[Path, list[StopLine]]:
        cid, ii, jj = [
            c
            for c in net.connectors[(arm_in, arm_out)]
            if c[1] == lane or len(net.connectors[(arm_in, arm_out)]) == 1
        ][0]
        r_in, r_out = net.roads[arm_in], net.roads[arm_out]
        p = net.path_of(r_in.fwd[ii] + [cid] + r_out.bwd[jj])
        # other traffic stops a few metres before the junction, clear of turning vehicles
        return p, [StopLine(net.path_of(r_in.fwd[ii]).length - STOP_SETBACK, cid)]

    # cross traffic on the E-W arms: moving on green, queued on red
    for arm_in, arm_out in (("E", "W"), ("W", "E")):
        p, stops = through(arm_in, arm_out)
        for k in range(int(rng.integers(1, 4))):
            s = (
                stops[0].s
                - rng.uniform(8.0, 20.0)
                - 9.0 * k
                - (rng.uniform(10, 60) if family == "red_light" else 0.0)
            )
            moving = family == "red_light"
            agents.append(
                _vehicle(rng, tracks(), p, s, speed * 0.9, v=speed * 0.8 if moving else 0.0, stops=stops)
            )
    # oncoming from the north (not across the ego's left turn)
    if turn != "left" and rng.random() < 0.8:
        p, stops = through("N", "S", lane=0)
        for _ in range(int(rng.integers(1, 3))):
            agents.append(
                _vehicle(rng, tracks(), p, rng.uniform(10.0, stops[0].s - 20.0), speed * 0.9, stops=stops)
            )
    if rng.random() < 0.5:  # a lead vehicle taking the same route
        agents.append(
            _vehicle(
                rng,
                tracks(),
                path,
                s_start + rng.uniform(20, 35),
                speed * 0.9,
                v=v_init,
                stops=[StopLine(s_conn0, conn_id)],
            )
        )
    agents += _roadside(
        rng,
        tracks,
        s_in.ref,
        -nf * width - SHOULDER - 1.2,
        (0.0, s_in.ref.length - 10),
        int(rng.integers(0, 3)),
    )
    route = list(s_in.fwd_blocks) + [net.lanes[conn_id].roadblock_id] + list(s_out.bwd_blocks)
    info = {"turn": turn, "exit_arm": out_arm, "lanes_forward": nf, "lanes_backward": nb}
    return Scenario(family, net, plan, ego, agents, route, duration, info)


def build_scenario(
    family: str, rng: np.random.Generator, duration: float, variant: int | None = None
) -> Scenario:
    """A fresh random instance of `family` lasting `duration` seconds.

    `variant` (an integer) fixes the family's discrete choice instead of drawing it: the curve
    direction (even: left, odd: right) and the junction exit (intersection_turn: left / straight /
    right; red_light: straight / right / left), so a split can cover every direction and command.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown scenario family {family!r}; expected one of {FAMILIES}")
    if family in ("intersection_turn", "red_light"):
        return _junction(family, rng, duration, variant)
    return _corridor(family, rng, duration, variant)
