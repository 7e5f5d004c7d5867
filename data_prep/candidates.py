"""Candidate trajectory sources for the shards: `vocab` (k-means vocabulary) and `perturb` (edited human
trajectory); the third, `policy`, samples a `vla_dipole.inference.PolicyRunner` (data_prep.shard_scoring).

Every trajectory is (8, 3) local (x, y, heading) at t = 0.5 .. 4.0 s. Randomness comes from a
numpy Generator the caller seeds per scene, so results do not depend on worker scheduling.
"""

from __future__ import annotations

import numpy as np

from navsim_adapter.geometry import rotate
from vla_dipole.data.shard_format import NUM_POSES

DT = 0.5  # seconds between poses
VOCAB_MODES = ("nearest", "sample", "mixed")
PERTURBATIONS = ("speed", "lateral", "heading", "brake")


# ------------------------------------------------------------------------------------------- vocab


def vocab_candidates(
    vocab: np.ndarray, human: np.ndarray, n: int, rng: np.random.Generator, mode: str = "mixed"
) -> np.ndarray:
    """n vocabulary entries: nearest to the human trajectory (x, y L2), uniformly sampled, or half each."""
    if mode not in VOCAB_MODES:
        raise ValueError(f"vocab mode {mode!r}: expected one of {VOCAB_MODES}")
    if n > len(vocab):
        raise ValueError(
            f"{n} vocabulary candidates requested but the vocabulary has only {len(vocab)} entries"
        )
    dist = np.linalg.norm(vocab[:, :, :2] - human[None, :, :2], axis=-1).mean(-1)
    order = np.argsort(dist, kind="stable")
    n_near = {"nearest": n, "sample": 0, "mixed": (n + 1) // 2}[mode]
    chosen = list(order[:n_near])
    rest = order[n_near:]
    chosen += list(rng.choice(rest, size=n - n_near, replace=False)) if n > n_near else []
    return np.asarray(vocab[np.asarray(chosen, dtype=np.int64)], dtype=np.float32)


# ----------------------------------------------------------------------------------------- perturb


def _path_with_origin(traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses with the current pose (0, 0, 0) prepended and their cumulative arc length."""
    poses = np.concatenate([np.zeros((1, 3)), np.asarray(traj, dtype=np.float64)])
    poses[:, 2] = np.unwrap(poses[:, 2])
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1))])
    return poses, s


def resample_along_path(traj: np.ndarray, s_new: np.ndarray) -> np.ndarray:
    """Poses at arc lengths `s_new` along the trajectory's own path (straight extrapolation past its end)."""
    poses, s = _path_with_origin(traj)
    s_new = np.maximum(np.asarray(s_new, dtype=np.float64), 0.0)
    keep = np.concatenate([[True], np.diff(s) > 1e-6])  # np.interp needs increasing abscissae
    sp, pp = s[keep], poses[keep]
    out = np.stack([np.interp(s_new, sp, pp[:, i]) for i in range(3)], axis=-1)
    beyond = s_new > sp[-1]
    if beyond.any():
        extra = s_new[beyond] - sp[-1]
        h = pp[-1, 2]
        out[beyond, 0] = pp[-1, 0] + extra * np.cos(h)
        out[beyond, 1] = pp[-1, 1] + extra * np.sin(h)
        out[beyond, 2] = h
    return out


def _arc_lengths(traj: np.ndarray) -> np.ndarray:
    return _path_with_origin(traj)[1][1:]


def scale_speed(traj: np.ndarray, factor: float) -> np.ndarray:
    """Drive the same path `factor` times as fast."""
    return resample_along_path(traj, _arc_lengths(traj) * factor)


def brake(traj: np.ndarray, start_step: int, decel: float) -> np.ndarray:
    """From pose `start_step` on, slow down at `decel` m/s^2 (never faster than the human) until stopped."""
    s = np.concatenate([[0.0], _arc_lengths(traj)])
    speed = np.diff(s) / DT  # mean speed over each 0.5 s interval
    t = np.arange(1, NUM_POSES + 1) * DT
    t0 = start_step * DT
    v0 = speed[start_step] if start_step < len(speed) else speed[-1]
    braked = np.where(t > t0, np.maximum(v0 - decel * (t - t0), 0.0), speed)
    return resample_along_path(traj, np.cumsum(np.minimum(speed, braked) * DT))


def lateral_offset(traj: np.ndarray, offset: float, ramp_s: float) -> np.ndarray:
    """Shift sideways (left positive) by `offset` m, blended in smoothly over `ramp_s` seconds."""
    poses = np.asarray(traj, dtype=np.float64).copy()
    t = np.arange(1, NUM_POSES + 1) * DT
    u = np.clip(t / ramp_s, 0.0, 1.0)
    d = offset * (3 * u**2 - 2 * u**3)
    normal = np.stack([-np.sin(poses[:, 2]), np.cos(poses[:, 2])], axis=-1)
    poses[:, :2] += d[:, None] * normal
    return _headings_from_motion(poses, fallback=traj)


def turn(traj: np.ndarray, angle: float) -> np.ndarray:
    """Heading noise: the whole trajectory rotated by `angle` about the current pose."""
    poses = np.asarray(traj, dtype=np.float64)
    return np.concatenate([rotate(poses[:, :2], angle), poses[:, 2:] + angle], axis=1)


def _headings_from_motion(poses: np.ndarray, fallback: np.ndarray, min_step: float = 0.2) -> np.ndarray:
    """Heading of each pose = direction of travel into it, where the ego moves at least `min_step` m."""
    prev = np.concatenate([np.zeros((1, 2)), poses[:-1, :2]])
    delta = poses[:, :2] - prev
    moving = np.linalg.norm(delta, axis=1) > min_step
    poses[:, 2] = np.where(moving, np.arctan2(delta[:, 1], delta[:, 0]), np.asarray(fallback)[:, 2])
    return poses


def random_perturbation(human: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One perturbed human trajectory: one random edit, plus a second one 30% of the time."""
    kinds = [PERTURBATIONS[rng.integers(len(PERTURBATIONS))]]
    if rng.random() < 0.3:
        kinds.append(PERTURBATIONS[rng.integers(len(PERTURBATIONS))])
    traj = np.asarray(human, dtype=np.float64)
    for kind in kinds:
        if kind == "speed":
            traj = scale_speed(traj, rng.uniform(0.4, 1.6))
        elif kind == "lateral":
            traj = lateral_offset(traj, rng.choice([-1, 1]) * rng.uniform(0.3, 3.0), rng.uniform(1.0, 4.0))
        elif kind == "heading":
            traj = turn(traj, rng.normal(0.0, 0.1))
        else:  # early (start 0-2) or late (start 4-7) braking
            start = int(rng.integers(0, 3) if rng.random() < 0.5 else rng.integers(4, NUM_POSES))
            traj = brake(traj, start, rng.uniform(1.0, 6.0))
    return traj


def perturb_candidates(human: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n perturbations of the human trajectory, (n, 8, 3) float32."""
    return (
        np.stack([random_perturbation(human, rng) for _ in range(n)])
        .astype(np.float32)
        .reshape(n, NUM_POSES, 3)
    )
