"""Unit tests of vla_dipole.losses on real computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_dipole import losses


def _rewards(b: int = 6, k: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, k, generator=g) * torch.linspace(0.1, 5.0, b)[:, None] + torch.arange(b)[:, None]


def test_group_std_standardises_each_scene_and_ignores_its_scale_and_offset():
    r = _rewards()
    a = losses.advantages(r, mode="group_std")
    np.testing.assert_allclose(a.mean(1).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.std(1, unbiased=False).numpy(), 1.0, atol=1e-4)
    scale, shift = torch.linspace(0.5, 7.0, r.shape[0])[:, None], torch.randn(r.shape[0], 1)
    torch.testing.assert_close(losses.advantages(r * scale + shift), a, atol=1e-4, rtol=1e-4)
    # ranks inside a scene are kept
    assert torch.equal(a.argsort(1), r.argsort(1))


def test_group_std_floor_keeps_near_ties_small():
    # two candidates 0.001 PDMS apart: without a floor they get +-1, like a 0.5 gap
    tie = torch.tensor([[0.900, 0.901]])
    assert torch.allclose(losses.advantages(tie).abs(), torch.ones(1, 2), atol=1e-2)
    a = losses.advantages(tie, std_floor=0.01)  # std 0.0005 -> divided by the floor
    torch.testing.assert_close(a, torch.tensor([[-0.05, 0.05]]), atol=1e-3, rtol=0)
    w_pos, _ = losses.dipole_weights(a, beta=4.0)
    assert (w_pos - 0.5).abs().max() < 0.1
    # at the edge: a spread of exactly the floor is standardised as before, just above it too
    for std in (0.01, 0.0101):
        r = torch.tensor([[0.5 - std, 0.5 + std]])
        torch.testing.assert_close(
            losses.advantages(r, std_floor=0.01), losses.advantages(r), atol=1e-3, rtol=0
        )
        assert losses.advantages(r, std_floor=0.01)[0, 1] == pytest.approx(1.0, abs=1e-3)
    # just below it the advantage shrinks in proportion
    r = torch.tensor([[0.5 - 0.005, 0.5 + 0.005]])
    assert losses.advantages(r, std_floor=0.01)[0, 1] == pytest.approx(0.5, abs=1e-3)


def test_group_std_single_candidate_and_constant_group_give_zero_not_nan():
    assert torch.equal(losses.advantages(torch.tensor([[3.0], [5.0]])), torch.zeros(2, 1))
    assert torch.equal(losses.advantages(torch.full((2, 4), 0.7)), torch.zeros(2, 4))


def test_group_mean_and_baselines():
    r = _rewards()
    torch.testing.assert_close(losses.advantages(r, mode="group_mean"), r - r.mean(1, keepdim=True))
    base = torch.linspace(-1, 1, r.shape[0])
    torch.testing.assert_close(
        losses.advantages(r, mode="raw_minus_baseline", baseline=base), r - base[:, None]
    )
    torch.testing.assert_close(losses.advantages(r, mode="raw_minus_baseline", baseline=0.5), r - 0.5)
    torch.testing.assert_close(
        losses.advantages(r, mode="raw_minus_baseline"), losses.advantages(r, mode="group_mean")
    )
    torch.testing.assert_close(losses.advantages(r, mode="raw"), r)


def test_advantages_carry_no_gradient():
    r = _rewards().requires_grad_(True)
    for mode in losses.ADVANTAGE_MODES:
        assert not losses.advantages(r, mode=mode).requires_grad


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": torch.zeros(4)}, "rewards: expected shape"),
        ({"rewards": torch.zeros(2, 3, dtype=torch.long)}, "rewards: expected a floating-point"),
        ({"rewards": torch.zeros(2, 3), "mode": "zscore"}, "mode: expected one of"),
        (
            {"rewards": torch.zeros(2, 3), "mode": "raw_minus_baseline", "baseline": torch.zeros(5)},
            "baseline",
        ),
    ],
)
def test_advantages_bad_input_names_the_field(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        losses.advantages(**kwargs)


def test_dipole_weights_bounded_complementary_monotone_even_at_extreme_beta():
    adv = torch.linspace(-1e4, 1e4, 2001)
    for beta in (0.0, 0.5, 3.0, 100.0, 1e6):
        w_pos, w_neg = losses.dipole_weights(adv, beta, k=0.3)
        assert torch.isfinite(w_pos).all() and torch.isfinite(w_neg).all()
        assert (w_pos >= 0).all() and (w_pos <= 1).all() and (w_neg >= 0).all() and (w_neg <= 1).all()
        torch.testing.assert_close(w_pos + w_neg, torch.ones_like(adv), atol=1e-6, rtol=0)
        assert (w_pos.diff() >= 0).all() and (w_neg.diff() <= 0).all()


def test_dipole_weights_shift_k_moves_the_half_point():
    beta, k = 2.5, -1.5
    w_pos, _ = losses.dipole_weights(torch.tensor([-k / beta]), beta, k)
    assert float(w_pos) == pytest.approx(0.5, abs=1e-6)
    # beta = 0: every sample weighs 1/2 in both heads (pi+ = pi- = mu)
    w_pos, w_neg = losses.dipole_weights(torch.randn(10), 0.0)
    assert torch.equal(w_pos, torch.full((10,), 0.5)) and torch.equal(w_neg, w_pos)


def test_dipole_weights_negative_head_keeps_precision_where_positive_saturates():
    _, w_neg = losses.dipole_weights(torch.tensor([30.0]), 1.0)
    assert 0 < float(w_neg) == pytest.approx(np.exp(-30.0), rel=1e-4)


def test_weights_are_stop_gradient():
    adv = torch.randn(16, requires_grad=True)
    w_pos, w_neg = losses.dipole_weights(adv, 2.0, 0.1)
    w_awr = losses.awr_weights(adv, 2.0, clip=5.0)
    assert not (w_pos.requires_grad or w_neg.requires_grad or w_awr.requires_grad)
    # and the losses detach weights a caller forgot to detach
    w = torch.rand(16, requires_grad=True)
    err_p, err_n = torch.rand(16, requires_grad=True), torch.rand(16, requires_grad=True)
    loss, _ = losses.dichotomous_loss(err_p, err_n, w, 1 - w)
    loss.backward()
    assert w.grad is None
    torch.testing.assert_close(err_p.grad, w.detach() / 16)
    torch.testing.assert_close(err_n.grad, (1 - w.detach()) / 16)


def test_awr_weights_exponential_then_clipped():
    adv = torch.linspace(-2, 2, 41)
    w = losses.awr_weights(adv, 1.5, clip=4.0)
    raw = torch.exp(1.5 * adv)
    torch.testing.assert_close(w[raw <= 4.0], raw[raw <= 4.0])
    assert torch.equal(w[raw > 4.0], torch.full_like(w[raw > 4.0], 4.0))
    assert torch.isinf(losses.awr_weights(torch.tensor([100.0]), 10.0, clip=None)).all()
    with pytest.raises(ValueError, match="clip"):
        losses.awr_weights(adv, 1.0, clip=0.0)


def test_dichotomous_loss_value_and_mask():
    g = torch.Generator().manual_seed(1)
    err_p, err_n = torch.rand(4, 5, generator=g), torch.rand(4, 5, generator=g)
    w_p = torch.rand(4, 5, generator=g)
    loss, stats = losses.dichotomous_loss(err_p, err_n, w_p, 1 - w_p)
    expected = np.mean(w_p.numpy() * err_p.numpy() + (1 - w_p.numpy()) * err_n.numpy())
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(stats["loss_pos"] + stats["loss_neg"]) == pytest.approx(expected, rel=1e-5)
    assert float(stats["w_pos_mean"]) == pytest.approx(float(w_p.mean()), rel=1e-5)

    # masked scenes neither count nor receive gradient, whatever their errors are
    mask = torch.tensor([True, False, True, False])
    e_p = err_p.clone().requires_grad_(True)
    masked, _ = losses.dichotomous_loss(e_p, err_n, w_p, 1 - w_p, mask=mask)
    masked.backward()
    keep = mask.numpy()
    expected = np.mean(
        w_p.numpy()[keep] * err_p.numpy()[keep] + (1 - w_p.numpy()[keep]) * err_n.numpy()[keep]
    )
    assert float(masked.detach()) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(e_p.grad[~mask], torch.zeros(2, 5))
    corrupted = err_p.clone()
    corrupted[~mask] = 1e9
    assert float(losses.dichotomous_loss(corrupted, err_n, w_p, 1 - w_p, mask=mask)[0]) == pytest.approx(
        expected, rel=1e-5
    )


def test_dichotomous_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="err_neg"):
        losses.dichotomous_loss(torch.rand(4), torch.rand(5), torch.rand(4), torch.rand(4))
    with pytest.raises(ValueError, match="w_pos"):
        losses.dichotomous_loss(torch.rand(4), torch.rand(4), torch.rand(3), torch.rand(4))
    with pytest.raises(TypeError, match="mask"):
        losses.dichotomous_loss(
            torch.rand(4), torch.rand(4), torch.rand(4), torch.rand(4), mask=torch.ones(4)
        )


def test_each_head_regresses_onto_its_own_weighted_distribution():
    """Minimising the dichotomous loss of two constant predictors gives the w+ / w- weighted means."""
    g = torch.Generator().manual_seed(2)
    y = torch.randn(512, 2, generator=g) + torch.tensor([1.0, -2.0])
    adv = y[:, 0] - y[:, 0].mean()
    w_pos, w_neg = losses.dipole_weights(adv, 2.0, 0.0)
    c_pos, c_neg = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([c_pos, c_neg], lr=0.05)
    for _ in range(600):
        loss, _ = losses.dichotomous_loss(
            ((y - c_pos) ** 2).sum(-1), ((y - c_neg) ** 2).sum(-1), w_pos, w_neg
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    yn, wp, wn = y.numpy(), w_pos.numpy(), w_neg.numpy()
    np.testing.assert_allclose(c_pos.detach().numpy(), np.average(yn, axis=0, weights=wp), atol=2e-3)
    np.testing.assert_allclose(c_neg.detach().numpy(), np.average(yn, axis=0, weights=wn), atol=2e-3)
    assert c_pos[0] > y[:, 0].mean() > c_neg[0]  # pi+ leans to high advantage, pi- to low


def test_weighted_loss_is_bc_with_unit_weights():
    err = torch.rand(7, 3)
    loss, stats = losses.weighted_loss(err, torch.ones(7, 3))
    assert float(loss) == pytest.approx(float(err.mean()), rel=1e-6)
    assert float(stats["w_ess_frac"]) == pytest.approx(1.0)
    loss, _ = losses.weighted_loss(err, torch.full((7, 1), 2.0))  # broadcast per scene
    assert float(loss) == pytest.approx(2 * float(err.mean()), rel=1e-6)


def test_effective_sample_size():
    assert float(losses.effective_sample_size(torch.ones(50))) == pytest.approx(50.0)
    one_hot = torch.zeros(50)
    one_hot[3] = 7.0
    assert float(losses.effective_sample_size(one_hot)) == pytest.approx(1.0)
    w = torch.rand(100) + 0.1
    ess = float(losses.effective_sample_size(w))
    assert ess == pytest.approx(float(w.sum() ** 2 / (w**2).sum()), rel=1e-5)
    assert float(losses.effective_sample_size(w * 1e30)) == pytest.approx(ess, rel=1e-5)  # no overflow
    two_inf = torch.tensor([1.0, float("inf"), 2.0, float("inf")])
    assert float(losses.effective_sample_size(two_inf)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="non-negative"):
        losses.effective_sample_size(torch.tensor([1.0, -1.0]))


def test_weight_stats_match_numpy_and_flag_explosion():
    w = torch.rand(1000, generator=torch.Generator().manual_seed(3))
    s = losses.weight_stats(w, prefix="w_")
    for q in (5, 25, 50, 75, 95):
        assert float(s[f"w_q{q:02d}"]) == pytest.approx(np.quantile(w.numpy(), q / 100), rel=1e-4)
    assert float(s["w_max_over_mean"]) == pytest.approx(float(w.max() / w.mean()), rel=1e-5)
    assert s["w_values"].shape == (1000,)
    adv = torch.randn(1000, generator=torch.Generator().manual_seed(4))
    sig = losses.weight_stats(losses.dipole_weights(adv, 50.0)[0])
    exp = losses.weight_stats(losses.awr_weights(adv.double(), 50.0, clip=None))
    assert float(sig["max"]) <= 1.0 and float(sig["ess_frac"]) > 0.3
    assert float(exp["ess_frac"]) < 0.01 and float(exp["max_over_mean"]) > 100
    masked = losses.weight_stats(w.reshape(10, 100), mask=torch.arange(10) < 4)
    assert masked["values"].numel() == 400
