"""A PDM-Closed-style reference planner for scenes without a NAVSIM metric cache.

Like NAVSIM's metric caching: IDM proposals along the route centreline for every combination of
speed-limit fraction (0.2 .. 1.0) and lateral offset (0, -1 m, +1 m), each simulated and scored
by our own scorer; the best proposal becomes the reference that normalises ego progress.
Leaders are agents whose boxes overlap the proposal's corridor and active red lights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from navsim_adapter.geometry import normalize_angle
from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.geometry import PACIFICA, polyline_project
from navsim_adapter.pdm.simulation import DT, NUM_STEPS, VX, simulate


@dataclass(frozen=True)
class IDMConfig:
    speed_limit_fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    lateral_offsets: tuple[float, ...] = (0.0, -1.0, 1.0)
    fallback_target_velocity: float = 15.0
    min_gap: float = 1.0
    headway: float = 1.5
    accel_max: float = 1.5
    decel_max: float = 3.0
    corridor_margin: float = 0.3  # [m] lateral slack when deciding whether a box blocks the path


IDM = IDMConfig()


def constant_velocity_reference(ego_state: np.ndarray) -> np.ndarray:
    """(41, 3) poses driving straight on at the current speed (a stand-in reference)."""
    s = np.arange(NUM_STEPS + 1) * DT * max(float(ego_state[VX]), 0.0)
    h = ego_state[2]
    return np.stack([ego_state[0] + s * np.cos(h), ego_state[1] + s * np.sin(h), np.full_like(s, h)], -1)


class _Path:
    """Arc-length parametrised polyline with interpolation of (x, y, heading)."""

    def __init__(self, poses: np.ndarray):
        self.poses = poses.copy()
        self.poses[:, 2] = np.unwrap(self.poses[:, 2])
        self.s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(poses[:, :2], axis=0).T))])

    def at(self, s: np.ndarray, offset: float | np.ndarray = 0.0) -> np.ndarray:
        s = np.clip(s, 0.0, self.s[-1])
        x = np.interp(s, self.s, self.poses[:, 0])
        y = np.interp(s, self.s, self.poses[:, 1])
        h = np.interp(s, self.s, self.poses[:, 2])
        x, y = x - np.sin(h) * offset, y + np.cos(h) * offset
        return np.stack([x, y, normalize_angle(h)], -1)

    def frenet(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(arc length, signed lateral offset) of points [P, 2]."""
        s = polyline_project(self.poses[:, :2], xy)
        p = self.at(s)
        d = (xy[:, 1] - p[:, 1]) * np.cos(p[:, 2]) - (xy[:, 0] - p[:, 0]) * np.sin(p[:, 2])
        return s, d


def _obstacles(ctx: ScoringContext, path: _Path):
    """Per step t: arc length of obstacles' rear, lateral offset, half width, speed along the path."""
    t_steps = NUM_STEPS + 1
    b = ctx.agent_boxes[:t_steps]
    m = ctx.num_agents
    s, d = path.frenet(b[..., :2].reshape(-1, 2)) if m else (np.zeros(0), np.zeros(0))
    s, d = s.reshape(t_steps, m), d.reshape(t_steps, m)
    heading = path.at(s.ravel())[:, 2].reshape(t_steps, m) if m else np.zeros((t_steps, 0))
    v = ctx.agent_velocity[:t_steps]
    v_along = v[..., 0] * np.cos(heading) + v[..., 1] * np.sin(heading)
    rear = s - b[..., 3] / 2.0
    half_w = np.maximum(b[..., 3], b[..., 4]) / 2.0
    valid = ctx.agent_valid[:t_steps].copy()
    # Red lights: a standing obstacle at the start of each active red connector.
    extra = []
    for k, poly in enumerate(ctx.red_light_polygons):
        xy = np.asarray(poly.exterior.coords)[:, :2]
        ps, pd = path.frenet(xy)
        near = np.abs(pd) < 5.0
        if near.any():
            extra.append((ps[near].min(), ctx.red_light_active[:t_steps, k]))
    if extra:
        rear = np.concatenate([rear, np.stack([np.full(t_steps, e[0]) for e in extra], -1)], 1)
        d = np.concatenate([d, np.zeros((t_steps, len(extra)))], 1)
        half_w = np.concatenate([half_w, np.full((t_steps, len(extra)), 2.0)], 1)
        v_along = np.concatenate([v_along, np.zeros((t_steps, len(extra)))], 1)
        valid = np.concatenate([valid, np.stack([e[1] for e in extra], -1)], 1)
    return rear, d, half_w, v_along, valid


def idm_proposals(ctx: ScoringContext, speed_limit: float | None = None, cfg: IDMConfig = IDM) -> np.ndarray:
    """(P, 41, 3) IDM proposals for every (lateral offset, speed-limit fraction)."""
    path = _Path(ctx.centerline)
    s0, _ = path.frenet(ctx.ego_state[None, :2])
    rear, d, half_w, v_lead, valid = _obstacles(ctx, path)
    limit = speed_limit or cfg.fallback_target_velocity
    combos = [(o, f) for o in cfg.lateral_offsets for f in cfg.speed_limit_fractions]
    offsets = np.array([c[0] for c in combos])
    target = np.maximum(np.array([c[1] for c in combos]) * limit, 0.1)
    n = len(combos)
    s = np.full(n, s0[0])
    v = np.full(n, max(float(ctx.ego_state[VX]), 0.0))
    prog = np.zeros((n, NUM_STEPS + 1))
    prog[:, 0] = s
    front = PACIFICA.front_length
    b_comf = np.sqrt(cfg.accel_max * cfg.decel_max)
    for t in range(NUM_STEPS):
        blocking = valid[t][None] & (
            np.abs(d[t][None] - offsets[:, None])
            < half_w[t][None] + PACIFICA.half_width + cfg.corridor_margin
        )
        gap = rear[t][None] - (s[:, None] + front)
        ahead = blocking & (gap > -front)
        gap = np.where(ahead, gap, np.inf)
        if gap.shape[1] == 0:  # no other agents: free road
            gap = np.full((n, 1), np.inf)
        lead = np.argmin(gap, axis=1)
        g = np.maximum(gap[np.arange(n), lead], 0.01)
        vl = np.where(np.isfinite(gap[np.arange(n), lead]), v_lead[t][lead] if v_lead.shape[1] else 0.0, v)
        s_star = cfg.min_gap + v * cfg.headway + v * (v - vl) / (2 * b_comf)
        acc = cfg.accel_max * (
            1 - (v / target) ** 4 - np.where(np.isfinite(g), (np.maximum(s_star, 0) / g) ** 2, 0.0)
        )
        acc = np.clip(acc, -cfg.decel_max, cfg.accel_max)
        v = np.maximum(v + acc * DT, 0.0)
        s = s + v * DT
        prog[:, t + 1] = s
    poses = np.stack([path.at(prog[i], offsets[i]) for i in range(n)])
    poses[:, 0] = ctx.ego_state[:3]
    return poses


def plan_reference(ctx: ScoringContext, speed_limit: float | None = None, cfg: IDMConfig = IDM) -> np.ndarray:
    """(41, 3) the best IDM proposal by our own scorer (v1-style: NC, DAC x weighted EP/TTC/C)."""
    from navsim_adapter.pdm import metrics as M

    proposals = idm_proposals(ctx, speed_limit, cfg)
    states = simulate(proposals, np.broadcast_to(ctx.ego_state, (len(proposals), ctx.ego_state.shape[0])))
    sub = M.subscores(ctx, states)
    multi = sub["nc"] * sub["dac"] * sub["ddc"] * sub["tlc"]
    masked = sub["progress"] * multi
    norm = masked.max()
    ep = (
        np.clip(sub["progress"] / norm, 0, 1)
        if norm > M.METRICS.progress_distance_threshold
        else np.ones(len(multi))
    )
    total = multi * (5 * ep + 5 * sub["ttc"] + 2 * sub["comfort"]) / 12
    return proposals[int(np.argmax(total))]
