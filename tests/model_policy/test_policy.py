"""DipolePolicy end to end on the tiny preset: batch -> conditioning -> errors / trajectories."""

import pytest
import torch

from vla_dipole.model.obs_encoder import current_speed
from vla_dipole.model.policy import DipolePolicy


@torch.no_grad()
def reference_sample(policy, batch, omega: float, num_steps: int, seed: int) -> torch.Tensor:
    """Trajectories [B, 8, 3] of (1 + omega) eps+ - omega eps- by a plain loop: the policy's scheduler,
    the start noise drawn from ``seed`` and every head called through its own ``forward``."""
    cond = policy.encode(batch)
    b, horizon, adim = cond.batch_size, policy.config.head.horizon, policy.config.head.action_dim
    sched = type(policy.sample_scheduler).from_config(policy.sample_scheduler.config)
    sched.set_timesteps(num_steps)
    x = (
        torch.randn(b, 1, horizon, adim, generator=torch.Generator().manual_seed(seed))
        * sched.init_noise_sigma
    )
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        eps_pos, eps_neg = (
            head(x_in, t, tokens, cond.mask, cond.proprio)
            for head, tokens in zip(
                (policy.head_pos, policy.head_neg),
                cond.tokens if cond.tokens.ndim == 4 else (cond.tokens, cond.tokens),
                strict=True,
            )
        )
        x = sched.step((1 + omega) * eps_pos - omega * eps_neg, t, x).prev_sample
    speed = current_speed(cond.proprio, policy.config.observation.ego_history)
    return policy.normalizer.denormalize(x[:, None], speed)[:, 0, 0]


def test_end_to_end_shapes(tiny_policy, batch):
    cond = tiny_policy.encode(batch)
    b = batch["images"].shape[0]
    assert cond.tokens.shape[0] == b and cond.tokens.shape[-1] == tiny_policy.backbone.hidden_size
    assert cond.mask.shape == cond.tokens.shape[:2] and cond.proprio.shape == (
        b,
        tiny_policy.config.observation.proprio_dim,
    )
    actions = tiny_policy.processor.trajectory_to_actions(batch["candidates"])
    err_pos, err_neg = tiny_policy.branch_errors(cond, actions)
    assert err_pos.shape == err_neg.shape == (b, 4)
    assert (err_pos > 0).all() and torch.isfinite(err_neg).all()
    traj = tiny_policy.sample(
        batch, omegas=[0.0, 1.0, 2.5], num_steps=4, generator=torch.Generator().manual_seed(0)
    )
    assert traj.shape == (b, 3, 8, 3) and torch.isfinite(traj).all()
    assert (traj[..., 2].abs() <= torch.pi).all()  # heading decoded with atan2


def test_omega_zero_equals_pi_plus_bitwise(tiny_policy, batch):
    def run(**kw):
        return tiny_policy.sample(batch, num_steps=5, generator=torch.Generator().manual_seed(3), **kw)

    pos = run(omegas=[0.0], branch="pos")
    # pi+ alone, and the omega rule, against a plain scheduler loop over each head's own forward
    torch.testing.assert_close(
        pos[:, 0], reference_sample(tiny_policy, batch, 0.0, 5, 3), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(
        run(omegas=[1.0])[:, 0], reference_sample(tiny_policy, batch, 1.0, 5, 3), rtol=1e-4, atol=1e-4
    )
    assert not torch.allclose(run(omegas=[0.0], branch="neg"), pos, atol=1e-3)
    sweep = run(omegas=[0.0, 1.0, 4.0])
    # the omega-0 row inside a sweep is pi+ alone bit for bit; the other rows match single calls
    assert torch.equal(sweep[:, 0], pos[:, 0])
    assert torch.equal(run(omegas=[2.0, 0.0, 0.0, 0.5])[:, 1:3], pos.expand(-1, 2, -1, -1))
    torch.testing.assert_close(sweep[:, 2], run(omegas=[4.0])[:, 0], rtol=1e-4, atol=1e-3)
    assert not torch.allclose(sweep[:, 1], sweep[:, 0], atol=1e-3)
    # omega = 0 rows never read pi-: even a non-finite pi- leaves them equal to pi+ alone
    with torch.no_grad():
        tiny_policy.head_neg.out.bias.fill_(float("nan"))
    sweep = run(omegas=[1.0, 0.0])
    assert torch.equal(sweep[:, 1], pos[:, 0]) and sweep[:, 0].isnan().all()


def test_identical_branches_make_omega_irrelevant(tiny_policy, batch):
    tiny_policy.copy_pos_to_neg()
    cond = tiny_policy.encode(batch)
    actions = tiny_policy.processor.trajectory_to_actions(batch["candidates"])
    g = torch.Generator().manual_seed(1)
    noise, t = torch.randn(actions.shape, generator=g), torch.randint(0, 100, actions.shape[:2], generator=g)
    err_pos, err_neg = tiny_policy.branch_errors(cond, actions, noise, t)
    assert torch.equal(err_pos, err_neg)
    torch.testing.assert_close(tiny_policy.bc_error(cond, actions, noise, t), err_pos, rtol=0, atol=1e-6)
    traj = tiny_policy.sample(batch, [0.0, 3.0], num_steps=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(traj[:, 0], traj[:, 1], rtol=1e-4, atol=1e-3)


def test_gradients_reach_exactly_the_trainable_parameters(tiny_policy, batch):
    tiny_policy.train()
    trainable = {id(p) for p in tiny_policy.trainable_parameters()}
    assert trainable and len(trainable) < len(list(tiny_policy.parameters()))
    cond = tiny_policy.encode(batch)
    err_pos, err_neg = tiny_policy.branch_errors(
        cond, tiny_policy.processor.trajectory_to_actions(batch["candidates"])
    )
    (err_pos.mean() + 0.5 * err_neg.mean()).backward()
    for name, p in tiny_policy.named_parameters():
        if id(p) in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    # BC touches only pi+
    tiny_policy.zero_grad(set_to_none=True)
    tiny_policy.bc_error(
        cond, tiny_policy.processor.trajectory_to_actions(batch["human"])[:, None]
    ).mean().backward()
    assert all(p.grad is None for p in tiny_policy.head_neg.parameters())
    assert all(p.grad is not None for p in tiny_policy.head_pos.parameters())


def test_bc_steps_fit_the_data(tiny_policy, batch):
    tiny_policy.train()
    opt = torch.optim.AdamW(tiny_policy.trainable_parameters(), lr=3e-3)
    cond = tiny_policy.encode(batch)
    actions = tiny_policy.processor.trajectory_to_actions(batch["human"])[:, None]
    g = torch.Generator().manual_seed(0)
    probe = dict(noise=torch.randn(actions.shape, generator=g), timesteps=torch.full(actions.shape[:2], 60))
    before = tiny_policy.bc_error(cond, actions, **probe).mean().item()
    for _ in range(25):
        loss = tiny_policy.bc_error(cond, actions, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert tiny_policy.bc_error(cond, actions, **probe).mean().item() < 0.7 * before


def test_best_of_n_keeps_the_highest_score(tiny_policy, batch):
    seen = []

    def score_fn(traj):  # prefer trajectories that end far ahead
        seen.append(traj)
        return traj[..., -1, 0]

    out = tiny_policy.sample(
        batch,
        [0.0, 1.0],
        num_steps=3,
        best_of=4,
        score_fn=score_fn,
        generator=torch.Generator().manual_seed(0),
    )
    b = batch["images"].shape[0]
    assert out.shape == (b, 2, 8, 3) and seen[0].shape == (b, 8, 8, 3)
    cands = seen[0].reshape(b, 2, 4, 8, 3)
    best = cands[..., -1, 0].argmax(-1)
    assert torch.equal(out, cands[torch.arange(b)[:, None], torch.arange(2)[None], best])
    with pytest.raises(ValueError, match="score_fn"):
        tiny_policy.sample(batch, [0.0], best_of=2)


def test_solver_and_steps_are_configurable(tiny_policy, batch):
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ddim = tiny_policy.sample(batch, [1.0], num_steps=3, generator=gen())
    assert not torch.allclose(ddim, tiny_policy.sample(batch, [1.0], num_steps=6, generator=gen()))
    from vla_dipole.sampling import build_scheduler

    tiny_policy.sample_scheduler = build_scheduler("dpmsolver++", 100, "squaredcos_cap_v2")
    dpm = tiny_policy.sample(batch, [1.0], num_steps=3, generator=gen())
    assert torch.isfinite(dpm).all() and not torch.allclose(dpm, ddim)


def test_branch_lora_adapters(tiny_config, batch):
    import dataclasses

    cfg = dataclasses.replace(
        tiny_config, branch_lora=dataclasses.replace(tiny_config.branch_lora, enabled=True, r=4)
    )
    torch.manual_seed(0)
    policy = DipolePolicy(cfg).train()
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    lora_pos = {n for n in trainable if "lora_" in n and ".pos." in n}
    lora_neg = {n for n in trainable if "lora_" in n and ".neg." in n}
    assert lora_pos and lora_neg and all(n.startswith(("head_", "backbone.")) for n in trainable)
    with torch.no_grad():  # give the adapters different, non-zero updates
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5 if ".pos." in n else 0.1)
    cond = policy.encode(batch)
    assert cond.tokens.shape[0] == 2 and not torch.allclose(cond.tokens[0], cond.tokens[1])
    actions = policy.processor.trajectory_to_actions(batch["candidates"])
    err_pos, _ = policy.branch_errors(cond, actions)
    err_pos.mean().backward()  # pi+'s loss reaches the pos adapter and head only
    grads = {n for n, p in policy.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {n for n in lora_pos if "lora_B" in n} <= grads
    assert not grads & (lora_neg | {n for n in trainable if n.startswith("head_neg")})
    traj = policy.sample(batch, [0.0, 1.0], num_steps=3, generator=torch.Generator().manual_seed(0))
    assert traj.shape == (batch["images"].shape[0], 2, 8, 3) and torch.isfinite(traj).all()
    # pi- starts as a full copy of pi+: head and LLM adapter, so both branches read the same tokens
    policy.copy_pos_to_neg()
    params = dict(policy.named_parameters())
    assert all(torch.equal(params[n.replace(".pos.", ".neg.")], params[n]) for n in lora_pos)
    cond = policy.encode(batch)
    assert torch.equal(cond.tokens[0], cond.tokens[1])
    err_pos, err_neg = policy.branch_errors(cond, actions, generator=torch.Generator().manual_seed(1))
    assert torch.equal(err_pos, err_neg)


def test_per_observation_generators_make_samples_batch_independent(tiny_policy, batch_factory):
    """A list of generators (one per observation) seeds each observation's noise on its own."""
    batch = batch_factory(batch_size=3)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    full = tiny_policy.sample(batch, [0.0, 2.0], num_steps=3, generator=gens([10, 11, 12]))
    part = tiny_policy.sample(
        {k: v[1:] for k, v in batch.items()}, [0.0, 2.0], num_steps=3, generator=gens([11, 12])
    )
    torch.testing.assert_close(full[1:], part, rtol=1e-4, atol=1e-3)
    again = tiny_policy.sample(batch, [0.0, 2.0], num_steps=3, generator=gens([99, 11, 12]))
    assert not torch.allclose(again[0], full[0]) and torch.equal(again[1:], full[1:])


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_prediction_type_sets_the_regression_target(tiny_config, batch, kind):
    import dataclasses

    cfg = dataclasses.replace(
        tiny_config, diffusion=dataclasses.replace(tiny_config.diffusion, prediction_type=kind)
    )
    torch.manual_seed(0)
    policy = DipolePolicy(cfg)
    assert policy.sample_scheduler.config.prediction_type == kind
    cond = policy.encode(batch)
    actions = policy.processor.trajectory_to_actions(batch["human"])[:, None]
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(actions.shape, generator=g), torch.full(actions.shape[:2], 60)
    out = policy.head_pos(
        policy.train_scheduler.add_noise(actions, noise, t), t, cond.tokens, cond.mask, cond.proprio
    )
    target = {
        "epsilon": noise,
        "sample": actions,
        "v_prediction": policy.train_scheduler.get_velocity(actions, noise, t),
    }[kind]
    err = policy.bc_error(cond, actions, noise=noise, timesteps=t)
    torch.testing.assert_close(err, (out - target).pow(2).mean(dim=(-1, -2)))
    traj = policy.sample(cond, [0.0, 1.0], num_steps=3, generator=g)
    assert traj.shape == (actions.shape[0], 2, 8, 3) and torch.isfinite(traj).all()
    with pytest.raises(ValueError, match="prediction_type"):
        type(cfg).from_dict(
            {**cfg.to_dict(), "diffusion": {**cfg.to_dict()["diffusion"], "prediction_type": "x"}}
        )


def _dichotomous_fit(policy, batch, steps: int = 40):
    """pi+ fitted to the logged trajectory, pi- to a copy drifting 3 m left: (cond, good, bad actions)."""
    policy.train()
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=3e-3)
    good = batch["human"]
    bad = good.clone()
    bad[..., 1] += torch.linspace(0.4, 3.0, 8)
    actions = policy.processor.trajectory_to_actions(torch.stack([good, bad], 1))  # [B, 2, 8, A]
    w_pos = torch.tensor([1.0, 0.0]).expand(actions.shape[:2])  # the advantage's sigmoid, saturated
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        cond = policy.encode(batch)
        err_pos, err_neg = policy.branch_errors(cond, actions, generator=g)
        loss = (w_pos * err_pos + (1 - w_pos) * err_neg).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    with torch.no_grad():
        return policy.encode(batch), actions


def test_log_ratio_scores_rank_pi_plus_data_above_pi_minus_data(tiny_policy, batch):
    cond, actions = _dichotomous_fit(tiny_policy, batch)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    scores = tiny_policy.log_ratio_scores(cond, actions, probes=8, generator=gen())
    assert scores.shape == (3, 2) and (scores[:, 0] > scores[:, 1]).all(), scores
    # the heads swapped: the same estimate with its sign flipped (both heads see the same noise)
    swapped = DipolePolicy(tiny_policy.config)
    swapped.load_state_dict(tiny_policy.state_dict())
    swapped.head_pos.load_state_dict(tiny_policy.head_neg.state_dict())
    swapped.head_neg.load_state_dict(tiny_policy.head_pos.state_dict())
    flipped = swapped.eval().log_ratio_scores(cond, actions, probes=8, generator=gen())
    torch.testing.assert_close(flipped, -scores, rtol=1e-4, atol=1e-6)
    # equal heads (BC, the beta = 0 control): no preference at all
    tiny_policy.copy_pos_to_neg()
    assert tiny_policy.log_ratio_scores(cond, actions, generator=gen()).abs().max() == 0


def test_best_of_n_by_log_ratio_keeps_the_highest_ratio(tiny_policy, batch):
    from vla_dipole.model.policy import LOG_RATIO

    cond, _ = _dichotomous_fit(tiny_policy, batch, steps=10)
    seen, scored = [], []
    rate = tiny_policy.log_ratio_scores

    def spy(*args, **kwargs):
        scored.append(rate(*args, **kwargs))
        return scored[-1]

    tiny_policy.log_ratio_scores = spy
    kw = dict(num_steps=3, best_of=4)
    out = tiny_policy.sample(
        cond, [0.0, 1.0], score_fn=LOG_RATIO, generator=torch.Generator().manual_seed(0), **kw
    )
    tiny_policy.sample(  # the same candidates, handed to a recording score_fn
        cond,
        [0.0, 1.0],
        score_fn=lambda t: seen.append(t) or t[..., 0, 0],
        generator=torch.Generator().manual_seed(0),
        **kw,
    )
    cands = seen[0].reshape(3, 2, 4, 8, 3)
    best = scored[0].reshape(3, 2, 4).argmax(-1)
    assert torch.equal(out, cands[torch.arange(3)[:, None], torch.arange(2)[None], best])
    assert not (best == 0).all()  # the pick is not simply the first sample
    with pytest.raises(ValueError, match="score_fn"):
        tiny_policy.sample(cond, [0.0], best_of=2, score_fn="best")


def test_num_samples_draws_independent_trajectories(tiny_policy, batch):
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    many = tiny_policy.sample(batch, [0.0, 1.0], num_steps=3, num_samples=4, generator=gen())
    assert many.shape == (3, 2, 4, 8, 3)
    ends = many[..., -1, :2].reshape(3, 2, 4, 2)
    assert (torch.cdist(ends, ends) + torch.eye(4) * 1e9 > 1e-4).all()  # no draw repeats another
    with pytest.raises(ValueError, match="num_samples"):
        tiny_policy.sample(batch, [0.0], num_samples=2, best_of=2, score_fn=lambda t: t[..., 0, 0])
