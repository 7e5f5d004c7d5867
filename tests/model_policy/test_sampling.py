"""The generic dichotomous sampler: omega rule, shared noise, omega = 0 == pi+ alone."""

import pytest
import torch

from vla_dipole.sampling import build_scheduler, combine_eps, sample_dichotomous


def gaussian_eps(mu: float):
    """Exact eps-predictor of the DDPM forward process for unit-variance data N(mu, 1)."""

    def eps(x_t: torch.Tensor, t: torch.Tensor, sched) -> torch.Tensor:
        abar = sched.alphas_cumprod[int(t)]
        return (1 - abar).sqrt() * (x_t - abar.sqrt() * mu)

    return eps


@pytest.mark.parametrize("solver", ["ddim", "dpmsolver++"])
def test_omega_sweep_matches_geometric_mixture(solver):
    # pi+^(1+w) / pi-^w of two unit Gaussians is N((1+w) mu+ - w mu-, 1).
    sched = build_scheduler(solver, num_train_timesteps=100)
    mu_pos, mu_neg = 1.0, -0.5
    eps_p, eps_n = gaussian_eps(mu_pos), gaussian_eps(mu_neg)
    omegas = [0.0, 0.5, 2.0]
    out = sample_dichotomous(
        lambda x, t: (eps_p(x, t, sched), eps_n(x, t, sched)),
        (4000,),
        omegas,
        sched,
        num_steps=50,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (3, 4000)
    # the solver starts at t0 < T from x ~ N(0, 1) instead of N(sqrt(abar_t0) mu, 1): for unit-variance
    # data the probability-flow ODE keeps x_t - sqrt(abar_t) mu, so the mean lands sqrt(abar_t0) mu short
    sched.set_timesteps(50)
    shrink = 1 - sched.alphas_cumprod[sched.timesteps[0]].sqrt().item()
    for row, w in zip(out, omegas, strict=True):
        assert row.mean().item() == pytest.approx(shrink * ((1 + w) * mu_pos - w * mu_neg), abs=0.08)
        assert row.std().item() == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize("solver", ["ddim", "dpmsolver++"])
def test_omega_zero_is_pi_plus_alone_bitwise(solver):
    torch.manual_seed(0)
    net_pos, net_neg = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    sched = build_scheduler(solver)
    seen = []

    def eps_fn(x, t):
        seen.append(x)
        return net_pos(x), net_neg(x)

    out = sample_dichotomous(
        eps_fn, (5, 3), [1.5, 0.0, 3.0], sched, 6, generator=torch.Generator().manual_seed(7)
    )
    # reference: plain diffusers loop with pi+ only, same generator, on the same [O, *shape] batch so
    # the GEMM kernels match bit for bit (a [5, 3] batch may round the last bit differently)
    ref_sched = build_scheduler(solver)
    ref_sched.set_timesteps(6)
    noise = torch.randn((5, 3), generator=torch.Generator().manual_seed(7)) * ref_sched.init_noise_sigma
    x = noise.unsqueeze(0).expand(3, 5, 3).contiguous()
    with torch.no_grad():
        for t in ref_sched.timesteps:
            x = ref_sched.step(net_pos(ref_sched.scale_model_input(x, t)), t, x).prev_sample
    assert torch.equal(out[1], x[1])
    # and, up to float rounding, the unbatched pi+ loop a user would write
    ref_sched = build_scheduler(solver)
    ref_sched.set_timesteps(6)
    x_single = noise.clone()
    with torch.no_grad():
        for t in ref_sched.timesteps:
            x_single = ref_sched.step(
                net_pos(ref_sched.scale_model_input(x_single, t)), t, x_single
            ).prev_sample
    torch.testing.assert_close(out[1], x_single, rtol=1e-5, atol=1e-5)
    x = x[1]
    assert not torch.allclose(out[0], x)
    assert len(seen) == 6 and all(s.shape == (3, 5, 3) for s in seen)
    # every omega row starts from the same noise
    assert torch.equal(seen[0][0], seen[0][1]) and torch.equal(seen[0][0], seen[0][2])


def test_combine_eps_identity():
    a, b = torch.randn(4, 2, 8, 4), torch.randn(4, 2, 8, 4)
    w = torch.tensor([0.0, 1.0, 2.5, -0.5])
    out = combine_eps(a, b, w)
    assert torch.equal(out[0], a[0])
    torch.testing.assert_close(out[2], 3.5 * a[2] - 2.5 * b[2])
    torch.testing.assert_close(out[3], 0.5 * a[3] + 0.5 * b[3])


def test_sampler_rejects_bad_input():
    sched = build_scheduler("ddim")
    with pytest.raises(ValueError, match="omegas"):
        sample_dichotomous(lambda x, t: (x, x), (2,), [], sched, 4)
    with pytest.raises(ValueError, match="init_noise"):
        sample_dichotomous(lambda x, t: (x, x), (2,), [0.0], sched, 4, init_noise=torch.zeros(3))
    with pytest.raises(ValueError, match="solver"):
        build_scheduler("euler")
