"""PDM sub-metrics on simulated ego states, vectorised over all candidates of one scene.

Definitions and constants: ../shared/docs/navsim.md §3 (NAVSIM v2 scorer, non-reactive traffic).
Stage 1, `scene_geometry`, does every geometric query (map areas, box overlaps, centreline
projections); stage 2, the metric functions, reduce those arrays to per-candidate scores.

Sequential rules of the official loops are reduced to "first contact" logic: a track that is first
touched without fault is ignored afterwards, and a track touched at fault already fixed the score,
so only the first contact of every (candidate, track) pair decides (same for TTC in (t, offset) order).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from scipy.signal import savgol_filter

from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.geometry import (
    FRONT_LEFT,
    FRONT_RIGHT,
    PACIFICA,
    box_corners,
    boxes_overlap,
    ego_corners,
    polyline_project,
    rect_overlap,
    segment_box_overlap,
)
from navsim_adapter.pdm.simulation import AX, AY, DT, HEADING, VX, VY, YAW_ACCEL, YAW_RATE


@dataclass(frozen=True)
class MetricConfig:
    """Scorer thresholds (NAVSIM PDMScorerConfig defaults)."""

    driving_direction_horizon: float = 1.0
    driving_direction_compliance_threshold: float = 2.0
    driving_direction_violation_threshold: float = 6.0
    stopped_speed_threshold: float = 5e-3  # TTC
    collision_stopped_speed: float = 5e-2  # collision classification (ego and track)
    ttc_offsets: tuple[int, ...] = (0, 3, 6, 9)  # steps of 0.1 s: np.arange(0, int(1.0 * 10), 3)
    progress_distance_threshold: float = 5.0
    lane_keeping_deviation_limit: float = 0.5
    lane_keeping_horizon_window: float = 2.0
    ahead_angle_deg: float = 30.0
    behind_angle_deg: float = 150.0


METRICS = MetricConfig()

# nuPlan comfort bounds.
MAX_ABS_MAG_JERK = 8.37
MAX_ABS_LAT_ACCEL = 4.89
MAX_LON_ACCEL = 2.40
MIN_LON_ACCEL = -4.05
MAX_ABS_YAW_ACCEL = 1.93
MAX_ABS_LON_JERK = 4.13
MAX_ABS_YAW_RATE = 0.95
# Two-frame extended comfort RMS bounds.
EC_ACCEL, EC_JERK, EC_YAW_RATE, EC_YAW_ACCEL = 0.7, 0.5, 0.1, 0.1


@dataclass
class SceneGeometry:
    """Every geometric fact the metrics need, for K candidates x T steps of one scene."""

    center: np.ndarray  # [K, T, 2]
    multiple_lanes: np.ndarray  # [K, T]
    non_drivable: np.ndarray  # [K, T]
    oncoming: np.ndarray  # [K, T]
    center_in_intersection: np.ndarray  # [K, T]
    rear_in_intersection: np.ndarray  # [K, T]
    collision_first: np.ndarray  # [K, M] first step of contact (-1 = none)
    collision_front: np.ndarray  # [K, M] ego front edge touches the track at that step
    ttc_first: np.ndarray  # [K, M] first flat (t, offset) index of a projected contact (-1 = none)
    ttc_first_full: np.ndarray  # same over all steps (v1 evaluates the whole horizon)
    red_light: np.ndarray  # [K] ego touched an active red-light lane connector
    progress: np.ndarray  # [K] raw progress along the centreline [m]
    off_centerline: np.ndarray  # [K, T] centre more than the lane-keeping limit from the centreline
    active_agents: np.ndarray  # [M] agents kept (not overlapping ego at t = 0)


def _first_true(mask: np.ndarray, axis: int) -> np.ndarray:
    """Index of the first True along `axis`, -1 where none."""
    idx = mask.argmax(axis=axis)
    return np.where(mask.any(axis=axis), idx, -1)


def _agent_corners(ctx: ScoringContext) -> np.ndarray:
    b = ctx.agent_boxes
    return box_corners(b[..., :2], b[..., 2], b[..., 3], b[..., 4])


def _contacts(ego_ctr, ego_h, ctx: ScoringContext, valid, frames) -> np.ndarray:
    """Box overlap [K, S, M] of ego boxes (centre [K, S, 2], heading [K, S]) with agents at frames [S]."""
    ego_r = np.hypot(PACIFICA.half_length, PACIFICA.half_width)
    ab = ctx.agent_boxes[frames]  # [S, M, 5]
    ag_r = 0.5 * np.hypot(ab[..., 3], ab[..., 4])
    dx = ego_ctr[:, :, None, 0] - ab[None, ..., 0]
    dy = ego_ctr[:, :, None, 1] - ab[None, ..., 1]
    d2 = dx * dx + dy * dy
    close = (d2 <= (ego_r + ag_r[None] + 1e-6) ** 2) & valid[frames][None]
    k, s, m = np.nonzero(close)
    hit = np.zeros(close.shape, dtype=bool)
    if len(k):
        box = ab[s, m]
        hit[k, s, m] = rect_overlap(
            ego_ctr[k, s],
            ego_h[k, s],
            PACIFICA.half_length,
            PACIFICA.half_width,
            box[:, :2],
            box[:, 2],
            box[:, 3] / 2.0,
            box[:, 4] / 2.0,
        )
    return hit


def scene_geometry(ctx: ScoringContext, states: np.ndarray, cfg: MetricConfig = METRICS) -> SceneGeometry:
    """Map areas, contacts and centreline projections for states [K, T, 11] of one scene."""
    k, t, _ = states.shape
    corners, center = ego_corners(states[..., :3])

    # Ego areas (NAVSIM EgoAreaIndex): multiple lanes, non-drivable, oncoming traffic.
    in_lane = ctx.lane_set.membership(corners)  # [L, K, T, 4]
    lanes_touched = in_lane.any(-1).sum(0)
    lane_holds_all = in_lane.all(-1).any(0) if len(ctx.lane_set) else np.zeros((k, t), dtype=bool)
    multiple_lanes = (lanes_touched > 1) & ~lane_holds_all
    non_drivable = ~ctx.drivable_set.any_contains(corners).all(-1)
    oncoming = ~ctx.route_lane_set.any_contains(center)
    center_in_int = ctx.intersection_set.any_contains(center)
    rear_in_int = ctx.intersection_set.any_contains(states[..., :2])

    # Agents: drop tracks overlapping ego's footprint at t = 0 (NAVSIM's log-replay policy).
    ag_c = _agent_corners(ctx)
    valid = ctx.agent_valid.copy()
    m = ctx.num_agents
    active = np.ones(m, dtype=bool)
    if m:
        active = ~(valid[0] & boxes_overlap(corners[0, 0][None], ag_c[0]))
        valid &= active[None]

    # Collisions over the 41 simulated steps.
    heading = states[..., HEADING]
    hit = _contacts(center, heading, ctx, valid, np.arange(t))
    collision_first = _first_true(hit, axis=1)  # [K, M]
    front = np.zeros((k, m), dtype=bool)
    kk, mm = np.nonzero(collision_first >= 0)
    if len(kk):
        ts = collision_first[kk, mm]
        seg = corners[kk, ts][:, [FRONT_LEFT, FRONT_RIGHT]]
        front[kk, mm] = segment_box_overlap(seg, ag_c[ts, mm])

    # TTC: ego box pushed forward at constant speed for each offset, vs agents at t + offset.
    speed = np.hypot(states[..., VX], states[..., VY])
    dxy = np.stack([np.cos(states[..., HEADING]) * speed, np.sin(states[..., HEADING]) * speed], -1)
    n_full = min(t, ctx.agent_boxes.shape[0] - max(cfg.ttc_offsets))
    moving = speed[:, :n_full] >= cfg.stopped_speed_threshold
    ttc_hit = np.zeros((k, n_full, len(cfg.ttc_offsets), m), dtype=bool)
    for j, off in enumerate(cfg.ttc_offsets):
        shift = dxy[:, :n_full] * (float(off) * DT)
        h = _contacts(center[:, :n_full] + shift, heading[:, :n_full], ctx, valid, np.arange(n_full) + off)
        ttc_hit[:, :, j] = h & moving[..., None]
    n_v2 = t - 1 - max(cfg.ttc_offsets) + 1  # steps 0 .. 40 - 9
    n_off = len(cfg.ttc_offsets)
    ttc_first = _first_true(ttc_hit[:, :n_v2].reshape(k, n_v2 * n_off, m), axis=1)
    ttc_first_full = _first_true(ttc_hit.reshape(k, n_full * n_off, m), axis=1)

    # Red lights: ego polygon intersects an active red lane connector at that step.
    red = np.zeros(k, dtype=bool)
    if len(ctx.red_light_ids) and ctx.red_light_active[:t].any():
        lo, hi = corners.min(-2), corners.max(-2)
        for j, poly in enumerate(ctx.red_light_polygons):
            steps = np.nonzero(ctx.red_light_active[:t, j])[0]
            if not len(steps):
                continue
            x0, y0, x1, y1 = poly.bounds
            near = (
                (lo[:, steps, 0] <= x1)
                & (hi[:, steps, 0] >= x0)
                & (lo[:, steps, 1] <= y1)
                & (hi[:, steps, 1] >= y0)
            )
            ck, cs = np.nonzero(near & ~red[:, None])
            if len(ck):
                polys = shapely.polygons(corners[ck, steps[cs]])
                inter = shapely.intersects(polys, poly)
                red[np.unique(ck[inter])] = True

    # Centreline: progress of the centre from t0 to the end, lateral distance every step.
    proj = polyline_project(ctx.centerline[:, :2], center[:, [0, -1]].reshape(-1, 2)).reshape(k, 2)
    progress = np.clip(proj[:, 1] - proj[:, 0], 0.0, None)
    off_centerline = ctx.centerline_polyline.farther_than(center, cfg.lane_keeping_deviation_limit)

    return SceneGeometry(
        center=center,
        multiple_lanes=multiple_lanes,
        non_drivable=non_drivable,
        oncoming=oncoming,
        center_in_intersection=center_in_int,
        rear_in_intersection=rear_in_int,
        collision_first=collision_first,
        collision_front=front,
        ttc_first=ttc_first,
        ttc_first_full=ttc_first_full,
        red_light=red,
        progress=progress,
        off_centerline=off_centerline,
        active_agents=active,
    )


def _relative_angle(ego_pose: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Angle between ego heading and the direction to `point` (nuPlan get_agent_relative_angle)."""
    v = point - ego_pose[..., :2]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = v / np.linalg.norm(v, axis=-1, keepdims=True)
        return np.arccos(np.cos(ego_pose[..., 2]) * u[..., 0] + np.sin(ego_pose[..., 2]) * u[..., 1])


def no_at_fault_collision(
    ctx: ScoringContext, states: np.ndarray, g: SceneGeometry, cfg: MetricConfig = METRICS
):
    """NC in {0, 0.5, 1}: decided by the first contact with every track."""
    k, m = g.collision_first.shape
    score = np.ones(k)
    kk, mm = np.nonzero(g.collision_first >= 0)
    if not len(kk):
        return score
    ts = g.collision_first[kk, mm]
    st = states[kk, ts]
    ego_stopped = np.hypot(st[:, VX], st[:, VY]) <= cfg.collision_stopped_speed
    # nuPlan's is_track_stopped looks at the track as first seen (non-agents always count as stopped).
    first_seen = _first_true(ctx.agent_valid, axis=0)
    v_first = ctx.agent_velocity[np.maximum(first_seen, 0), np.arange(m)]
    track_stopped = ~ctx.agent_is_agent | (
        np.hypot(v_first[:, 0], v_first[:, 1]) <= cfg.collision_stopped_speed
    )
    behind = _relative_angle(st[:, :3], ctx.agent_boxes[ts, mm, :2]) > np.deg2rad(cfg.behind_angle_deg)
    lateral_at_fault = g.multiple_lanes[kk, ts] | g.non_drivable[kk, ts]
    at_fault = ~ego_stopped & (track_stopped[mm] | (~behind & (g.collision_front[kk, mm] | lateral_at_fault)))
    value = np.where(ctx.agent_is_agent[mm], 0.0, 0.5)
    np.minimum.at(score, kk[at_fault], value[at_fault])
    return score


def time_to_collision(
    ctx: ScoringContext,
    states: np.ndarray,
    g: SceneGeometry,
    full_horizon: bool = False,
    cfg: MetricConfig = METRICS,
):
    """TTC in {0, 1}: 0 if the first projected contact with some track is ahead / not behind."""
    first = g.ttc_first_full if full_horizon else g.ttc_first
    k = first.shape[0]
    score = np.ones(k)
    kk, mm = np.nonzero(first >= 0)
    if not len(kk):
        return score
    n_off = len(cfg.ttc_offsets)
    ts, js = first[kk, mm] // n_off, first[kk, mm] % n_off
    offsets = np.asarray(cfg.ttc_offsets)[js]
    rear = states[kk, ts, :3]
    track = ctx.agent_boxes[ts + offsets, mm, :2]
    angle = _relative_angle(rear, track)
    ahead = angle < np.deg2rad(cfg.ahead_angle_deg)
    behind = angle > np.deg2rad(cfg.behind_angle_deg)
    risky_area = g.multiple_lanes[kk, ts] | g.non_drivable[kk, ts] | g.rear_in_intersection[kk, ts]
    violation = ahead | (risky_area & ~behind)
    score[kk[violation]] = 0.0
    return score


def drivable_area_compliance(g: SceneGeometry) -> np.ndarray:
    return np.where(g.non_drivable.any(-1), 0.0, 1.0)


def traffic_light_compliance(g: SceneGeometry) -> np.ndarray:
    return np.where(g.red_light, 0.0, 1.0)


def driving_direction_compliance(g: SceneGeometry, cfg: MetricConfig = METRICS) -> np.ndarray:
    """DDC: max distance driven against traffic within any 1 s window (intersections excluded)."""
    step = np.zeros(g.center.shape[:2])
    step[:, 1:] = np.linalg.norm(g.center[:, 1:] - g.center[:, :-1], axis=-1)
    step[~g.oncoming | g.center_in_intersection] = 0.0
    horizon = int(cfg.driving_direction_horizon / DT)
    c = np.concatenate([np.zeros((step.shape[0], 1)), np.cumsum(step, axis=1)], axis=1)
    idx = np.arange(step.shape[1])
    window = c[:, idx + 1] - c[:, np.maximum(0, idx - horizon)]
    worst = window.max(-1)
    return np.where(
        worst < cfg.driving_direction_compliance_threshold,
        1.0,
        np.where(worst < cfg.driving_direction_violation_threshold, 0.5, 0.0),
    )


def lane_keeping(g: SceneGeometry, cfg: MetricConfig = METRICS) -> np.ndarray:
    """LK: 0 after >= 2 s of consecutive (non-intersection) steps more than 0.5 m off the centreline.

    Intersection steps neither count nor reset the run: the run length at a step is the number of
    counted exceeding steps since the last counted step within the limit."""
    need = int(np.ceil(cfg.lane_keeping_horizon_window / DT))
    counted = ~g.center_in_intersection
    hit = counted & g.off_centerline
    reset = counted & ~g.off_centerline
    steps = np.arange(hit.shape[1])
    last_reset = np.maximum.accumulate(np.where(reset, steps, -1), axis=1)
    c = np.concatenate([np.zeros((hit.shape[0], 1), dtype=np.int64), np.cumsum(hit, axis=1)], axis=1)
    run = c[:, 1:] - np.take_along_axis(c, last_reset + 1, axis=1)
    return np.where((hit & (run >= need)).any(-1), 0.0, 1.0)


def normalized_progress(
    progress: np.ndarray,
    multiplier: np.ndarray,
    reference_masked: np.ndarray | float,
    cfg: MetricConfig = METRICS,
) -> np.ndarray:
    """EP (v2): raw / max(masked reference, masked self), 1 when that maximum is under 5 m."""
    norm = np.maximum(reference_masked, progress * multiplier)
    with np.errstate(invalid="ignore", divide="ignore"):
        ep = np.clip(progress / norm, 0.0, 1.0)
    return np.where(norm > cfg.progress_distance_threshold, ep, 1.0)


def normalized_progress_v1(progress, multiplier, reference_masked, cfg: MetricConfig = METRICS) -> np.ndarray:
    """EP (v1): masked raw / max(masked), 1 when that maximum is under 5 m."""
    masked = progress * multiplier
    norm = np.maximum(reference_masked, masked)
    with np.errstate(invalid="ignore", divide="ignore"):
        ep = masked / norm
    return np.where(norm > cfg.progress_distance_threshold, ep, 1.0)


# ---- comfort ------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _savgol_operator(n: int, window: int, poly: int, deriv: int, delta: float) -> np.ndarray:
    """[n, n] matrix W with savgol_filter(y) == y @ W (the filter, edges included, is linear)."""
    return savgol_filter(
        np.eye(n), window_length=min(window, n), polyorder=poly, deriv=deriv, delta=delta, axis=-1
    )


def _savgol(y: np.ndarray, window: int, poly: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    """scipy's Savitzky-Golay filter (mode 'interp') along the last axis, as one matrix product."""
    return y @ _savgol_operator(y.shape[-1], window, poly, deriv, delta)


def _acceleration(states: np.ndarray, coordinate: str) -> np.ndarray:
    """Smoothed acceleration [K, T]: 'x' / 'y' at the vehicle centre, or 'magnitude' at the rear axle."""
    if coordinate == "x":
        d = PACIFICA.rear_axle_to_center
        acc = states[..., AX] + d * states[..., YAW_RATE] ** 2 + d * states[..., YAW_ACCEL]
    elif coordinate == "y":
        acc = states[..., AY] + 0.0
    else:
        acc = np.hypot(states[..., AX], states[..., AY])
    return np.round(_savgol(acc, 8, 2), 8)


@lru_cache(maxsize=64)
def _time_delta(n: int) -> float:
    return float(np.diff(np.arange(n, dtype=np.float64) * DT).mean())


def _jerk(states: np.ndarray, coordinate: str) -> np.ndarray:
    n = states.shape[1]
    return np.round(_savgol(_acceleration(states, coordinate), 15, 2, 1, _time_delta(n)), 8)


def _yaw_derivative(states: np.ndarray, deriv: int, poly: int) -> np.ndarray:
    h = states[..., HEADING]
    adj = np.zeros_like(h)
    adj[:, 1:] = np.cumsum(np.round(np.diff(h, axis=-1) / (2 * np.pi)), axis=-1)
    unwrapped = h - 2 * np.pi * adj
    # NAVSIM passes no window here, so its default of 5 applies (not 15).
    return np.round(_savgol(unwrapped, 5, poly, deriv, _time_delta(h.shape[1])), 8)


def _within(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ((x > lo) & (x < hi)).all(-1)


def comfort(states: np.ndarray) -> np.ndarray:
    """1 if all six nuPlan comfort quantities stay in bounds over states [K, T, 11]."""
    ok = _within(_acceleration(states, "x"), MIN_LON_ACCEL, MAX_LON_ACCEL)
    ok &= _within(_acceleration(states, "y"), -MAX_ABS_LAT_ACCEL, MAX_ABS_LAT_ACCEL)
    ok &= _within(_jerk(states, "magnitude"), -MAX_ABS_MAG_JERK, MAX_ABS_MAG_JERK)
    ok &= _within(_jerk(states, "x"), -MAX_ABS_LON_JERK, MAX_ABS_LON_JERK)
    ok &= _within(_yaw_derivative(states, 2, 3), -MAX_ABS_YAW_ACCEL, MAX_ABS_YAW_ACCEL)
    ok &= _within(_yaw_derivative(states, 1, 2), -MAX_ABS_YAW_RATE, MAX_ABS_YAW_RATE)
    return ok.astype(np.float64)


def history_comfort(states: np.ndarray, past_states: np.ndarray | None) -> np.ndarray:
    """HC: comfort over the logged past (0.1 s states) followed by the simulated states."""
    if past_states is None or len(past_states) == 0:
        return np.ones(states.shape[0])
    past = np.broadcast_to(past_states, (states.shape[0],) + past_states.shape)
    return comfort(np.concatenate([past, states], axis=1))


def extended_comfort(states: np.ndarray, prev_states: np.ndarray, overlap_start: int = 5) -> np.ndarray:
    """EC: RMS differences of comfort signals between this frame's and the previous frame's plan.

    states, prev_states: [K, T, 11]; the previous plan started `overlap_start` steps (0.5 s) earlier.
    """
    cur, prev = states[:, :-overlap_start], prev_states[:, overlap_start:]

    def feats(s):
        return (
            _acceleration(s, "magnitude"),
            _jerk(s, "magnitude"),
            _yaw_derivative(s, 1, 2),
            _yaw_derivative(s, 2, 2),
        )

    ok = np.ones(states.shape[0], dtype=bool)
    for a, b, bound in zip(
        feats(cur), feats(prev), (EC_ACCEL, EC_JERK, EC_YAW_RATE, EC_YAW_ACCEL), strict=True
    ):
        ok &= np.sqrt(np.mean((a - b) ** 2, axis=1)) <= bound
    return ok.astype(np.float64)


def subscores(ctx: ScoringContext, states: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row sub-scores of already simulated states [K, T, 11]: no progress normalisation and no
    human filter (those need the reference / human rows, see scorer.score)."""
    g = scene_geometry(ctx, states)
    return {
        "nc": no_at_fault_collision(ctx, states, g),
        "dac": drivable_area_compliance(g),
        "ddc": driving_direction_compliance(g),
        "tlc": traffic_light_compliance(g),
        "ttc": time_to_collision(ctx, states, g),
        "lk": lane_keeping(g),
        "comfort": comfort(states),
        "hc": history_comfort(states, ctx.past_states),
        "progress": g.progress,
    }
