"""Closed-loop simulation of candidate trajectories: NAVSIM's LQR tracker + kinematic bicycle model.

Everything runs on flat batches [K, ...] of float64 numpy arrays (K = all candidates of all scenes),
with the constants of NAVSIM's LQR tracker and bicycle model (`TrackerConfig`). Re-derived, not copied: the 10-step lateral
LQR prediction is accumulated in closed form (the step matrices are unit upper-triangular), and the
velocity least-squares normal matrix does not depend on the poses, so it is factorised once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# nuPlan's principal_value (modulo, [-pi, pi)) is geometry.wrap_angle; NAVSIM's normalize_angle (atan2)
# is geometry.normalize_angle: each call site below uses the one NAVSIM uses there.
from navsim_adapter.geometry import local_to_global, normalize_angle, wrap_angle
from navsim_adapter.pdm.geometry import PACIFICA, VehicleParameters

# State vector layout (NAVSIM's StateIndex).
X, Y, HEADING, VX, VY, AX, AY, STEER, STEER_RATE, YAW_RATE, YAW_ACCEL = range(11)
STATE_DIM = 11

DT = 0.1  # [s] simulation step (LQR discretisation)
# The motion model integrates over a nuPlan TimeDuration: 100000 µs * 1e-6, one ulp below 0.1.
DT_PROPAGATE = 100_000 * 1e-6
NUM_STEPS = 40  # 4 s at 10 Hz -> 41 states including t = 0
TRAJ_INTERVAL_S = 0.5  # candidate pose spacing
TRAJ_POSES = 8


@dataclass(frozen=True)
class TrackerConfig:
    q_longitudinal: float = 10.0
    r_longitudinal: float = 1.0
    q_lateral: tuple[float, float, float] = (1.0, 10.0, 0.0)
    r_lateral: float = 1.0
    horizon: int = 10
    jerk_penalty: float = 1e-4
    curvature_rate_penalty: float = 1e-2
    initial_curvature_penalty: float = 1e-10
    stopping_gain: float = 0.5
    stopping_velocity: float = 0.2
    max_steering: float = np.pi / 3
    accel_time_constant: float = 0.2
    steering_time_constant: float = 0.05


TRACKER = TrackerConfig()


def _whole_us(times_s: np.ndarray, timestamp_us) -> np.ndarray:
    """Absolute times [s] -> whole microseconds relative to t0, truncated like Python's int()."""
    return (times_s * 1e6).astype(np.int64) - np.asarray(timestamp_us, dtype=np.int64)[..., None]


def sample_times_us(timestamp_us, horizon_s: float = NUM_STEPS * DT, step_s: float = DT) -> np.ndarray:
    """Query times [µs] rel. t0 ([T], or [B, T] for an array of B timestamps), truncated to whole
    microseconds the way NAVSIM does.

    NAVSIM adds t0 in float seconds and truncates with int(): the offsets are therefore sometimes
    one microsecond short of the round value, which moves the interpolated pose measurably at speed.
    """
    t0_s = np.asarray(timestamp_us, dtype=np.int64)[..., None] * 1e-6
    return _whole_us(np.arange(0.0, horizon_s + step_s, step_s) + t0_s, timestamp_us)


def _knot_times_us(
    timestamp_us, num_poses: int = TRAJ_POSES, interval: float = TRAJ_INTERVAL_S
) -> np.ndarray:
    """Knot times [µs] rel. t0 ([P+1] or [B, P+1]) of the candidate poses (t0 itself first), as
    nuPlan stamps them."""
    t0_s = np.asarray(timestamp_us, dtype=np.int64)[..., None] * 1e-6
    ts = _whole_us((np.arange(0.0, num_poses * interval, interval) + interval) + t0_s, timestamp_us)
    return np.concatenate([np.zeros(ts.shape[:-1] + (1,), dtype=np.int64), ts], axis=-1)


def interpolate_candidates(
    local_poses: np.ndarray, ego_pose: np.ndarray, timestamp_us, num_steps: int = NUM_STEPS
) -> np.ndarray:
    """Candidates [N, P, 3] local at 0.5 s -> global reference poses [N, num_steps+1, 3] at 0.1 s;
    batched: [B, N, P, 3] with ego poses [B, 3] and timestamps [B] -> [B, N, num_steps+1, 3].

    The current rear-axle pose is the first knot; positions are linear in time, heading is
    unwrapped, interpolated and wrapped back (nuPlan's InterpolatedTrajectory).
    """
    if local_poses.ndim == 3:
        one = interpolate_candidates(local_poses[None], ego_pose[None], np.array([timestamp_us]), num_steps)
        return one[0]
    b, n, p, _ = local_poses.shape
    glob = local_to_global(local_poses, ego_pose[:, None, None, :], wrap=normalize_angle)
    first = np.broadcast_to(ego_pose[:, None, None], (b, n, 1, 3))
    knots = np.concatenate([first, glob], axis=2)  # [B, N, P+1, 3]
    knots[..., 2] = np.unwrap(knots[..., 2], axis=2)
    kt = _knot_times_us(timestamp_us, p).astype(np.float64)  # [B, P+1]
    qt = sample_times_us(timestamp_us, num_steps * DT)
    qt = np.clip(qt, kt[:, :1], kt[:, -1:]).astype(np.float64)  # [B, T]
    # searchsorted(kt, qt, side="left") per scene: the number of knots strictly before qt.
    hi = np.clip((kt[:, None, :] < qt[:, :, None]).sum(-1), 1, p)
    lo = hi - 1
    k_hi = np.take_along_axis(knots, hi[:, None, :, None], axis=2)
    k_lo = np.take_along_axis(knots, lo[:, None, :, None], axis=2)
    t_hi, t_lo = np.take_along_axis(kt, hi, 1), np.take_along_axis(kt, lo, 1)
    slope = (k_hi - k_lo) / (t_hi - t_lo)[:, None, :, None]
    out = slope * (qt - t_lo)[:, None, :, None] + k_lo
    out[..., 2] = wrap_angle(out[..., 2])
    return out


def rows_times(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x [..., M] @ w [M, N] with every row summed j = 0 .. M-1, left to right, in elementwise ops.

    Batch-invariant by construction: a row's result never depends on how many rows ride along. A BLAS
    GEMM picks its kernel (and so its summation order) from the matrix shape, which made a scene
    scored inside a batch differ from the scene alone in the last bits on some CPUs.
    """
    out = np.zeros(x.shape[:-1] + w.shape[1:], dtype=np.result_type(x, w))
    for j, row in enumerate(w):
        nz = np.flatnonzero(row)  # banded operators (Savitzky-Golay): exact zeros add nothing
        if len(nz):
            lo, hi = nz[0], nz[-1] + 1
            out[..., lo:hi] += x[..., j, None] * row[lo:hi]
    return out


@lru_cache(maxsize=8)
def _velocity_fit_operator(num_disp: int, dt: float, jerk_penalty: float) -> np.ndarray:
    """Linear map from along-heading displacements [M] to (v0, a_0..a_{M-2}).

    With rows (cos h_i, sin h_i) * c_ij, A^T A = C^T C does not depend on the headings, so the
    regularised normal matrix is the same for every trajectory: pinv(C^T C + λ R^T R) C^T.
    """
    c = np.tril(np.full((num_disp, num_disp), dt * dt), k=0)
    c[:, 0] = dt
    # NAVSIM zeroes the strict upper triangle of the full matrix incl. column 0 -> column j>i is 0.
    c[np.triu_indices(num_disp, k=1)] = 0.0
    # NAVSIM's "banded difference" matrix: its second block assignment overwrites the +1 band,
    # leaving -I plus a single +1 in the last column. Reproduced as-is so the fits agree.
    band = np.zeros((num_disp - 2, num_disp - 1))
    band[:, 1:] = np.eye(num_disp - 2)
    band[:, :-1] = -np.eye(num_disp - 2)
    r = np.concatenate([np.zeros((num_disp - 2, 1)), band], axis=1)
    normal = c.T @ c + jerk_penalty * r.T @ r
    return np.linalg.pinv(normal) @ c.T


def _profile(initial: np.ndarray, derivs: np.ndarray, dt: float) -> np.ndarray:
    return initial[:, None] + np.pad(np.cumsum(derivs * dt, axis=-1), [(0, 0), (1, 0)])


def fit_velocity_curvature(poses: np.ndarray, cfg: TrackerConfig = TRACKER, dt: float = DT):
    """Velocity [K, T-1] and curvature [K, T-1] profiles fitted to reference poses [K, T, 3]."""
    diff = np.diff(poses, axis=1)
    heading_disp = normalize_angle(diff[..., 2])
    h = poses[:, :-1, 2]
    along = np.cos(h) * diff[..., 0] + np.sin(h) * diff[..., 1]  # [K, M]
    m = along.shape[1]
    sol = rows_times(along, _velocity_fit_operator(m, dt, cfg.jerk_penalty).T)
    velocity = _profile(sol[:, 0], sol[:, 1:], dt)  # [K, M]

    # Curvature: y = A x with A lower-triangular, column 0 = v*dt, columns j>0 scaled by v_i dt^2.
    k = poses.shape[0]
    a = np.broadcast_to(np.tri(m), (k, m, m)).copy()
    a[:, :, 0] = velocity * dt
    a[:, 1:, 1:] *= (velocity * dt * dt)[:, 1:, None]
    q = cfg.curvature_rate_penalty * np.eye(m)
    q[0, 0] = cfg.initial_curvature_penalty
    at = a.transpose(0, 2, 1)
    x = np.linalg.solve(at @ a + q, (at @ heading_disp[..., None]))[..., 0]
    curvature = _profile(x[:, 0], x[:, 1:], dt)
    return velocity, curvature


def _running(x: np.ndarray) -> np.ndarray:
    """[H+1, ...] running sums 0, 0 + x_0, (0 + x_0) + x_1, ... over the horizon axis 0: the values a
    loop accumulating x_i into a zero-initialised total takes, bit for bit. One add per horizon step
    on whole rows (numpy's cumsum along a leading axis walks each column separately: ~40x slower)."""
    out = np.empty((len(x) + 1,) + x.shape[1:])
    out[0] = 0.0
    for i in range(len(x)):
        np.add(out[i], x[i], out=out[i + 1])
    return out


@lru_cache(maxsize=8)
def _running_dt(horizon: int, dt: float) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.full(horizon, dt))])


def _lqr_commands(state, ref_pose, v_ref, curv, cfg: TrackerConfig, dt: float, wheel_base: float):
    """Acceleration and steering-rate commands [K] for one step (state [11, K], ref_pose [3, K],
    curvature window curv [H, K]: field-major, so every operation reads contiguous rows)."""
    v0 = state[VX]
    dx, dy = state[X] - ref_pose[0], state[Y] - ref_pose[1]
    href = ref_pose[2]
    lat_err = -dx * np.sin(href) + dy * np.cos(href)
    head_err = normalize_angle(state[HEADING] - href)
    steer = state[STEER]

    stop = (v_ref <= cfg.stopping_velocity) & (v0 <= cfg.stopping_velocity)
    b_lon = cfg.horizon * dt
    lqr_accel = (
        -1.0
        / (b_lon * cfg.q_longitudinal * b_lon + cfg.r_longitudinal)
        * b_lon
        * cfg.q_longitudinal
        * (v0 - v_ref)
    )
    accel = np.where(stop, -cfg.stopping_gain * (v0 - v_ref), lqr_accel)

    # Lateral: the horizon's affine prediction x_H = A x0 + B u + g, accumulated in closed form.
    # The recurrences are running sums over the horizon steps i: sequential cumsums reproduce the
    # step-by-step loop exactly (same additions in the same order), on [K, H] arrays at once.
    # Arrays are [H, K] (horizon first) so every cumsum adds contiguous rows.
    v = v0 + (accel * dt) * np.arange(cfg.horizon, dtype=np.float64)[:, None]  # v_i = v0 + accel dt i
    a = v * dt
    b = v * dt / wheel_base
    c = -v * curv * dt
    b2_run = _running_dt(cfg.horizon, dt)[:, None]  # b2 before step i: dt added i times
    # First-level sums (alpha, beta, b1, g1) in one cumsum, then the sums weighted by them.
    alpha_run, beta_run, b1_run, g1_run = _running(np.stack([a, b, b * b2_run[:-1], c], 1)).transpose(1, 0, 2)
    gamma, b0, g0 = _running(a[:, None] * np.stack([beta_run, b1_run, g1_run], 1)[:-1])[-1]
    alpha, beta, b1, g1 = alpha_run[-1], beta_run[-1], b1_run[-1], g1_run[-1]
    b2 = b2_run[-1, 0]
    e0 = lat_err + alpha * head_err + gamma * steer + g0
    e1 = head_err + beta * steer + g1
    e2 = steer
    e1 = normalize_angle(e1)
    e2 = normalize_angle(e2)
    q0, q1, q2 = cfg.q_lateral
    tail = q0 * b0 * e0 + q1 * b1 * e1 + q2 * b2 * e2
    inv = -1.0 / (q0 * b0 * b0 + q1 * b1 * b1 + q2 * b2 * b2 + cfg.r_lateral)
    steer_rate = np.where(stop, 0.0, inv * tail)
    return accel, steer_rate


def _propagate(state, accel_cmd, steer_rate_cmd, cfg: TrackerConfig, dt: float, wheel_base: float):
    """One bicycle-model step with first-order actuator lag (NAVSIM's BatchKinematicBicycleModel);
    state [11, K] -> next state [11, K]."""
    accel = state[AX]
    steer = state[STEER]
    new_accel = dt / (dt + cfg.accel_time_constant) * (accel_cmd - accel) + accel
    ideal_steer = dt * steer_rate_cmd + steer
    new_steer = dt / (dt + cfg.steering_time_constant) * (ideal_steer - steer) + steer
    steer_rate = (new_steer - steer) / dt

    vx = state[VX]
    out = np.empty_like(state)
    out[X] = state[X] + vx * np.cos(state[HEADING]) * dt
    out[Y] = state[Y] + vx * np.sin(state[HEADING]) * dt
    out[HEADING] = wrap_angle(state[HEADING] + vx * np.tan(steer) / wheel_base * dt)
    out[VX] = vx + new_accel * dt
    out[VY] = 0.0
    out[STEER] = np.clip(steer + steer_rate * dt, -cfg.max_steering, cfg.max_steering)
    out[YAW_RATE] = out[VX] * np.tan(out[STEER]) / wheel_base
    out[AX] = new_accel
    out[AY] = 0.0
    out[YAW_ACCEL] = (out[YAW_RATE] - state[YAW_RATE]) / dt
    out[STEER_RATE] = steer_rate
    return out


def simulate(
    reference_poses: np.ndarray,
    initial_states: np.ndarray,
    cfg: TrackerConfig = TRACKER,
    vehicle: VehicleParameters = PACIFICA,
    dt: float = DT,
) -> np.ndarray:
    """Track reference poses [K, T, 3] from initial states [K, 11] -> simulated states [K, T, 11]."""
    k, t, _ = reference_poses.shape
    velocity, curvature = fit_velocity_curvature(reference_poses, cfg, dt)
    n_prof = velocity.shape[1]
    # Field-major copies: [step, field, K]. The curvature window of step i is rows i .. i+H of the
    # profile, the last value repeated past its end.
    ref = np.ascontiguousarray(reference_poses.transpose(1, 2, 0))
    v_ref = np.ascontiguousarray(velocity.T)
    curv = np.concatenate([curvature.T, np.repeat(curvature.T[-1:], cfg.horizon, axis=0)])
    states = [np.ascontiguousarray(np.asarray(initial_states, dtype=np.float64).T)]
    for cur in range(t - 1):
        ref_idx = min(cur + cfg.horizon, n_prof - 1)
        accel, steer_rate = _lqr_commands(
            states[-1], ref[cur], v_ref[ref_idx], curv[cur : cur + cfg.horizon], cfg, dt, vehicle.wheel_base
        )
        states.append(_propagate(states[-1], accel, steer_rate, cfg, DT_PROPAGATE, vehicle.wheel_base))
    return np.stack(states).transpose(2, 0, 1).copy()
