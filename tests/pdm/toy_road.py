"""Hand-built scoring contexts: a straight two-way road through an intersection.

Used by the tests (known answers, equivalence with the official scorer) and by the bench. Every
scene can be placed anywhere in the global frame (`origin`) so frame handling is exercised too.
Layout in the road frame (x east along the route, y left):
  roadblock rb_w  x in [-60, 60],  lanes lane_w_e (y in [-3.5, 0], eastbound, on route) and lane_w_w
  intersection    x in [60, 76],   connectors conn_e (on route) and conn_w, plus a crossing road north
  roadblock rb_e  x in [76, 200],  lanes lane_e_e (on route) and lane_e_w
  car park        x in [0, 30], y in [-14, -3.5]
"""

from __future__ import annotations

import numpy as np
from shapely.affinity import affine_transform
from shapely.geometry import Polygon, box

from navsim_adapter.pdm.context import AGENT_STEPS, ScoringContext
from navsim_adapter.pdm.simulation import DT, NUM_STEPS, STATE_DIM

LANE_W = 3.5
ROUTE_Y = -LANE_W / 2


def _to_global(origin: np.ndarray):
    c, s = np.cos(origin[2]), np.sin(origin[2])

    def pts(xy: np.ndarray) -> np.ndarray:
        return np.stack(
            [origin[0] + c * xy[..., 0] - s * xy[..., 1], origin[1] + s * xy[..., 0] + c * xy[..., 1]], -1
        )

    def poly(p: Polygon) -> Polygon:
        return affine_transform(p, [c, -s, s, c, origin[0], origin[1]])

    def heading(h):
        return np.arctan2(np.sin(h + origin[2]), np.cos(h + origin[2]))

    return pts, poly, heading


def road_map() -> tuple[list[str], list[str], list[Polygon], list[str]]:
    """(ids, layers, polygons, route lane ids) in the road frame."""
    items = [
        ("rb_w", "ROADBLOCK", box(-60, -LANE_W, 60, LANE_W)),
        ("rb_e", "ROADBLOCK", box(76, -LANE_W, 200, LANE_W)),
        ("rb_n", "ROADBLOCK", box(60, 8, 76, 80)),
        ("lane_w_e", "LANE", box(-60, -LANE_W, 60, 0)),
        ("lane_w_w", "LANE", box(-60, 0, 60, LANE_W)),
        ("lane_e_e", "LANE", box(76, -LANE_W, 200, 0)),
        ("lane_e_w", "LANE", box(76, 0, 200, LANE_W)),
        ("lane_n_n", "LANE", box(68, 8, 76, 80)),
        ("lane_n_s", "LANE", box(60, 8, 68, 80)),
        ("int_0", "INTERSECTION", box(60, -LANE_W - 1.0, 76, 8)),
        ("conn_e", "LANE_CONNECTOR", box(60, -LANE_W, 76, 0)),
        ("conn_w", "LANE_CONNECTOR", box(60, 0, 76, LANE_W)),
        ("conn_en", "LANE_CONNECTOR", Polygon([(60, -LANE_W), (66, -LANE_W), (76, 8), (68, 8)])),
        ("park_0", "CARPARK_AREA", box(0, -14, 30, -LANE_W)),
    ]
    route = ["lane_w_e", "conn_e", "lane_e_e"]
    ids, layers, polys = (list(x) for x in zip(*items, strict=True))
    return ids, layers, polys, route


def _agent_track(x, y, h, v, length, width, steps=AGENT_STEPS, start=0, stop=None):
    t = np.arange(steps) * DT
    xs = x + v * np.cos(h) * t
    ys = y + v * np.sin(h) * t
    boxes = np.stack([xs, ys, np.full(steps, h), np.full(steps, length), np.full(steps, width)], -1)
    vel = np.stack([np.full(steps, v * np.cos(h)), np.full(steps, v * np.sin(h))], -1)
    valid = np.zeros(steps, dtype=bool)
    valid[start : stop if stop is not None else steps] = True
    return boxes, vel, valid


def lane_follow(
    speed: float, accel: float = 0.0, y: float = ROUTE_Y, x0: float = 0.0, num: int = 8, dt: float = 0.5
):
    """Road-frame poses (num, 3) driving straight along y with speed/accel (stops at zero speed)."""
    t = np.arange(1, num + 1) * dt
    if accel < 0 and speed > 0:
        t_stop = speed / -accel
        tt = np.minimum(t, t_stop)
        s = speed * tt + 0.5 * accel * tt**2
    else:
        s = speed * t + 0.5 * accel * t**2
    return np.stack([x0 + s, np.full(num, y), np.zeros(num)], -1)


def toy_context(
    seed: int = 0,
    *,
    ego_x: float | None = None,
    ego_speed: float | None = None,
    agents: list[dict] | None = None,
    red_steps: tuple[int, int] | None = None,
    origin: tuple[float, float, float] | None = None,
    past_accel: float = 0.0,
    human_accel: float = 0.0,
    token: str | None = None,
) -> ScoringContext:
    """A scene on the toy road. Agents: dicts with x, y, heading, speed, length, width, type
    (road frame), optional start/stop steps. Unspecified parts are drawn from `seed`."""
    rng = np.random.default_rng(seed)
    ego_x = float(rng.uniform(0, 30)) if ego_x is None else ego_x
    ego_speed = float(rng.uniform(0, 14)) if ego_speed is None else ego_speed
    origin = np.array(
        origin
        if origin is not None
        else (rng.uniform(-2e3, 2e3), rng.uniform(-2e3, 2e3), rng.uniform(-np.pi, np.pi))
    )
    if agents is None:
        agents = random_agents(rng, ego_x, ego_speed)
    if red_steps is None and rng.random() < 0.4:
        a = int(rng.integers(0, 30))
        red_steps = (a, AGENT_STEPS)
    pts, poly, heading = _to_global(origin)

    ids, layers, polys, route = road_map()
    m = len(agents)
    boxes = np.zeros((AGENT_STEPS, m, 5))
    vel = np.zeros((AGENT_STEPS, m, 2))
    valid = np.zeros((AGENT_STEPS, m), dtype=bool)
    for j, a in enumerate(agents):
        bx, v, ok = _agent_track(
            a["x"],
            a["y"],
            a.get("heading", 0.0),
            a.get("speed", 0.0),
            a.get("length", 4.5),
            a.get("width", 1.9),
            start=a.get("start", 0),
            stop=a.get("stop"),
        )
        boxes[:, j], vel[:, j], valid[:, j] = bx, v, ok
    g_boxes = boxes.copy()
    g_boxes[..., :2] = pts(boxes[..., :2])
    g_boxes[..., 2] = heading(boxes[..., 2])
    c, s = np.cos(origin[2]), np.sin(origin[2])
    g_vel = np.stack([c * vel[..., 0] - s * vel[..., 1], s * vel[..., 0] + c * vel[..., 1]], -1)

    ego = np.zeros(STATE_DIM)
    ego[:2] = pts(np.array([ego_x, ROUTE_Y]))
    ego[2] = heading(0.0)
    ego[3] = ego_speed
    ego[5] = past_accel

    cx = np.arange(-60.0, 200.0, 1.0)
    center = np.stack([cx, np.full_like(cx, ROUTE_Y), np.zeros_like(cx)], -1)
    g_center = np.concatenate([pts(center[:, :2]), heading(center[:, 2:3])], -1)

    ref_local = lane_follow(ego_speed, 0.0, num=NUM_STEPS, dt=DT, x0=ego_x)
    ref_local = np.concatenate([[[ego_x, ROUTE_Y, 0.0]], ref_local])
    ref = np.concatenate([pts(ref_local[:, :2]), heading(ref_local[:, 2:3])], -1)

    red_active = np.zeros((AGENT_STEPS, 1), dtype=bool)
    if red_steps is not None:
        red_active[red_steps[0] : red_steps[1], 0] = True

    human = lane_follow(ego_speed, human_accel)
    human[:, 1] = 0.0  # local frame: along the ego heading

    # Logged past at 0.1 s for 1.5 s .. 0.1 s before t0 (history comfort), constant accel.
    tp = -np.arange(15, 0, -1) * DT
    v_past = ego_speed + past_accel * tp
    x_past = ego_x + ego_speed * tp + 0.5 * past_accel * tp**2
    past = np.zeros((len(tp), STATE_DIM))
    past[:, :2] = pts(np.stack([x_past, np.full_like(x_past, ROUTE_Y)], -1))
    past[:, 2] = heading(0.0)
    past[:, 3] = v_past
    past[:, 5] = past_accel

    return ScoringContext(
        token=token or f"toy{seed:012d}",
        timestamp_us=1_600_000_000_000_000 + seed * 1_234_567,
        ego_state=ego,
        agent_tokens=[a.get("token", f"agent_{j}") for j, a in enumerate(agents)],
        agent_types=[a.get("type", "vehicle") for a in agents],
        agent_boxes=g_boxes,
        agent_velocity=g_vel,
        agent_valid=valid,
        map_ids=ids,
        map_layers=layers,
        map_polygons=[poly(p) for p in polys],
        route_lane_ids=route,
        centerline=g_center,
        reference_poses=ref,
        red_light_ids=["conn_e"],
        red_light_polygons=[poly(polys[ids.index("conn_e")])],
        red_light_active=red_active,
        human_trajectory=human,
        past_states=past,
    )


def random_agents(rng: np.random.Generator, ego_x: float, ego_speed: float) -> list[dict]:
    """A random mix of the scenario families: lead car (moving or stopped), follower, oncoming
    car, static obstacle, crossing pedestrian, late-appearing car."""
    out: list[dict] = []
    if rng.random() < 0.7:
        out.append(
            dict(
                x=ego_x + rng.uniform(8, 45),
                y=ROUTE_Y + rng.normal(0, 0.2),
                speed=rng.choice([0.0, rng.uniform(0, 10)]),
            )
        )
    if rng.random() < 0.5:
        out.append(dict(x=ego_x - rng.uniform(7, 20), y=ROUTE_Y, speed=ego_speed + rng.uniform(0, 6)))
    if rng.random() < 0.7:
        out.append(dict(x=ego_x + rng.uniform(10, 80), y=LANE_W / 2, heading=np.pi, speed=rng.uniform(0, 12)))
    if rng.random() < 0.5:
        out.append(
            dict(
                x=ego_x + rng.uniform(5, 40),
                y=rng.uniform(-3.0, -0.5),
                length=0.6,
                width=0.6,
                type=str(rng.choice(["traffic_cone", "barrier", "generic_object"])),
            )
        )
    if rng.random() < 0.4:
        out.append(
            dict(
                x=ego_x + rng.uniform(10, 40),
                y=rng.uniform(-8, -4),
                heading=np.pi / 2,
                speed=rng.uniform(0.5, 2),
                length=0.8,
                width=0.8,
                type="pedestrian",
            )
        )
    if rng.random() < 0.3:
        start = int(rng.integers(5, 30))
        out.append(
            dict(
                x=ego_x + rng.uniform(15, 40),
                y=ROUTE_Y,
                speed=rng.uniform(0, 8),
                start=start,
                type="bicycle",
                length=1.8,
                width=0.7,
            )
        )
    for j, a in enumerate(out):
        a.setdefault("token", f"trk{j:03d}")
        # Generic placement: an agent exactly on the ego's heading line makes nuPlan's relative-angle
        # test take arccos of a dot product that rounds to +-(1 + ulp), i.e. NaN, machine-dependently.
        a["y"] += rng.normal(0, 0.05)
        a["heading"] = a.get("heading", 0.0) + rng.normal(0, 0.01)
    return out


def toy_candidates(ctx: ScoringContext, n: int, seed: int = 0) -> np.ndarray:
    """n candidates (n, 8, 3) local to the ego: lane follows at various speeds, lane changes,
    swerves off the road, hard brakes and random perturbations of the human trajectory."""
    rng = np.random.default_rng(seed)
    v0 = float(ctx.ego_state[3])
    t = np.arange(1, 9) * 0.5
    out = np.zeros((n, 8, 3))
    for i in range(n):
        kind = i % 6
        if kind == 0 and ctx.human_trajectory is not None:
            out[i] = ctx.human_trajectory + rng.normal(0, [0.3, 0.15, 0.02], (8, 3)) * (i > 0)
            continue
        v = max(0.0, v0 + rng.normal(0, 3))
        a = rng.normal(0, 1.5)
        s = np.maximum(v * t + 0.5 * a * t**2, 0.0)
        s = np.maximum.accumulate(s)
        if kind == 1:  # lateral offset / lane change
            lat = rng.uniform(-6, 6) * np.clip(t / rng.uniform(1, 4), 0, 1)
        elif kind == 2:  # curve (possibly off the road)
            k = rng.normal(0, 0.04)
            h = k * s
            out[i] = np.stack(
                [np.sin(h) / k if abs(k) > 1e-9 else s, (1 - np.cos(h)) / k if abs(k) > 1e-9 else 0 * s, h],
                -1,
            )
            continue
        elif kind == 3:  # hard brake or jerky speed
            s = np.maximum.accumulate(np.maximum(v0 * t - rng.uniform(2, 6) * t**2, 0.0))
            lat = np.zeros(8)
        elif kind == 4:  # constant velocity
            s, lat = v0 * t, np.zeros(8)
        else:
            lat = rng.normal(0, 0.5, 8).cumsum() * 0.3
        h = np.arctan2(np.gradient(lat), np.maximum(np.gradient(s), 1e-3)) if kind != 4 else np.zeros(8)
        out[i] = np.stack([s, lat, h], -1)
    return out


def straight_states(
    x0: float = 0.0, y0: float = ROUTE_Y, speed=10.0, heading: float = 0.0, lateral=None
) -> np.ndarray:
    """States [41, 11] of a rear axle moving along `heading` with per-step speeds (scalar or [41]);
    `lateral` [41] adds a sideways offset. For metric tests that bypass the simulation."""
    from navsim_adapter.pdm.simulation import AX, VX, X, Y
    from navsim_adapter.pdm.simulation import HEADING as H

    n = NUM_STEPS + 1
    v = np.broadcast_to(np.asarray(speed, dtype=np.float64), (n,)).copy()
    s = np.concatenate([[0.0], np.cumsum(v[:-1] * DT)])
    st = np.zeros((n, STATE_DIM))
    st[:, X] = x0 + s * np.cos(heading)
    st[:, Y] = y0 + s * np.sin(heading)
    if lateral is not None:
        st[:, Y] += lateral
    st[:, H] = heading
    st[:, VX] = v
    st[:, AX] = np.gradient(v, DT)
    return st
