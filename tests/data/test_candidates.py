"""Candidate sources: vocabulary selection and the physical meaning of each perturbation."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep import candidates as C

T = np.arange(1, 9) * 0.5


def straight(speed: float) -> np.ndarray:
    return np.stack([T * speed, np.zeros(8), np.zeros(8)], axis=1)


def curve(speed: float, yaw_rate: float) -> np.ndarray:
    heading = yaw_rate * T
    radius = speed / yaw_rate
    return np.stack([radius * np.sin(heading), radius * (1 - np.cos(heading)), heading], axis=1)


def test_speed_scaling_stays_on_the_path_and_scales_progress():
    human = curve(8.0, 0.2)
    np.testing.assert_allclose(C.scale_speed(human, 1.0), human, atol=1e-9)
    slow = C.scale_speed(human, 0.5)

    def arc(tr):
        steps = np.diff(np.vstack([[0, 0], tr[:, :2]]), axis=0)
        return np.cumsum(np.linalg.norm(steps, axis=1))

    # chord lengths underestimate the arc a little; within 1 %
    np.testing.assert_allclose(arc(slow)[-1], 0.5 * arc(human)[-1], rtol=1e-2)
    radius = 8.0 / 0.2
    np.testing.assert_allclose(
        np.hypot(slow[:, 0], slow[:, 1] - radius), radius, rtol=2e-3
    )  # still on the circle
    fast = C.scale_speed(straight(10.0), 1.5)
    np.testing.assert_allclose(fast[:, 0], T * 15.0)  # extrapolated past the human's end
    np.testing.assert_allclose(fast[:, 1:], 0.0, atol=1e-12)


def test_braking_slows_down_to_a_stop_and_never_overtakes():
    human = straight(10.0)
    braked = C.brake(human, start_step=2, decel=4.0)
    np.testing.assert_allclose(braked[:2], human[:2])  # before braking: unchanged
    speeds = np.diff(np.concatenate([[0.0], braked[:, 0]])) / 0.5
    assert (np.diff(speeds[2:]) <= 1e-9).all() and speeds[-1] == pytest.approx(0.0)
    assert (braked[:, 0] <= human[:, 0] + 1e-9).all()
    late = C.brake(human, start_step=6, decel=4.0)
    assert late[-1, 0] > braked[-1, 0]


def test_lateral_offset_reaches_the_offset_and_heading_follows_motion():
    shifted = C.lateral_offset(straight(10.0), offset=2.0, ramp_s=2.0)
    np.testing.assert_allclose(shifted[3:, 1], 2.0)  # ramp complete at t = 2 s
    assert 0 < shifted[0, 1] < shifted[1, 1] < 2.0
    assert (shifted[:4, 2] > 0).all()  # turning left while drifting left
    np.testing.assert_allclose(shifted[4:, 2], 0.0, atol=1e-9)
    np.testing.assert_allclose(shifted[:, 0], T * 10.0)


def test_turn_keeps_distances():
    human = curve(6.0, -0.1)
    rotated = C.turn(human, 0.3)
    np.testing.assert_allclose(np.linalg.norm(rotated[:, :2], axis=1), np.linalg.norm(human[:, :2], axis=1))
    np.testing.assert_allclose(rotated[:, 2], human[:, 2] + 0.3)


def test_perturbations_are_seeded_varied_and_finite():
    human = curve(9.0, 0.05)
    a = C.perturb_candidates(human, 16, np.random.default_rng(7))
    b = C.perturb_candidates(human, 16, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 8, 3) and a.dtype == np.float32 and np.isfinite(a).all()
    assert len({tuple(np.round(x[-1], 3)) for x in a}) == 16
    stopped = C.perturb_candidates(np.zeros((8, 3)), 8, np.random.default_rng(0))
    assert np.isfinite(stopped).all()


def test_vocab_candidates_nearest_and_sampled():
    vocab = np.stack([straight(v) for v in np.linspace(0, 15, 16)]).astype(np.float32)
    human = straight(7.1)
    near = C.vocab_candidates(vocab, human, 3, np.random.default_rng(0), mode="nearest")
    np.testing.assert_allclose(near[:, -1, 0], [7.0 * 4, 8.0 * 4, 6.0 * 4])
    mixed = C.vocab_candidates(vocab, human, 6, np.random.default_rng(0), mode="mixed")
    np.testing.assert_array_equal(mixed[:3], near)
    assert len({float(x[-1, 0]) for x in mixed}) == 6  # sampled part never repeats the nearest ones
    with pytest.raises(ValueError, match="only 16 entries"):
        C.vocab_candidates(vocab, human, 17, np.random.default_rng(0))


def test_policy_source_without_checkpoint_fails_clearly(tmp_path):
    from data_prep.build_shards import build_shards

    with pytest.raises(
        FileNotFoundError, match=r"--policy .*no_such_ckpt: policy checkpoint directory does not exist"
    ):
        build_shards(tmp_path, "unit", tmp_path / "out", sources="policy", policy=tmp_path / "no_such_ckpt")
