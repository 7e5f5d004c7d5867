"""The diffusion head: branch batching is exact, candidates are independent, padding is ignored."""

import pytest
import torch
from torch import nn

from vla_dipole.model.config import HeadConfig
from vla_dipole.model.flops import counted_flops
from vla_dipole.model.head import (
    DiffusionTrajectoryHead,
    _time_conditioning,
    denoise_branches,
    inference_params,
    prepare_branches,
    stack_heads,
)
from vla_dipole.sampling import combine_eps

CFG = HeadConfig(width=64, depth=2, num_heads=4)
D, P = 32, 12


def make_inputs(b=3, k=5, t_len=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(b, t_len, D, generator=g)
    mask = torch.ones(b, t_len, dtype=torch.bool)
    mask[0, -4:] = False
    return (
        torch.randn(b, k, 8, 4, generator=g),
        torch.randint(0, 100, (b, k), generator=g),
        tokens,
        mask,
        torch.randn(b, P, generator=g),
    )


@pytest.fixture
def heads():
    torch.manual_seed(0)
    return DiffusionTrajectoryHead(CFG, D, P), DiffusionTrajectoryHead(CFG, D, P)


def test_shapes_and_branches_differ(heads):
    x, t, tokens, mask, proprio = make_inputs()
    eps = heads[0](x, t, tokens, mask, proprio)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    assert not torch.allclose(eps, heads[1](x, t, tokens, mask, proprio))


def test_batched_branches_equal_separate_heads_bitwise(heads):
    x, t, tokens, mask, proprio = make_inputs()
    params = stack_heads(heads)
    memory = prepare_branches(heads[0], params, tokens, mask, proprio)
    both = denoise_branches(heads[0], params, x, t, memory)
    assert both.shape == (2, *x.shape)
    with torch.no_grad():
        alone = [h(x, t, tokens, mask, proprio) for h in heads]
    assert torch.equal(both[0], alone[0]) and torch.equal(both[1], alone[1])
    # the omega identity at the head level: combining the batched outputs == combining separate calls
    omegas = torch.tensor([0.0, 0.5, 3.0])
    combined = combine_eps(both[0].expand(3, *x.shape), both[1].expand(3, *x.shape), omegas)
    assert torch.equal(combined[0], alone[0])
    for w, row in zip(omegas.tolist(), combined, strict=True):
        assert torch.equal(row, (1 + w) * alone[0] - w * alone[1])


def test_per_branch_tokens(heads):
    x, t, tokens, mask, proprio = make_inputs()
    other = tokens + 1.0
    params = stack_heads(heads)
    memory = prepare_branches(heads[0], params, torch.stack([tokens, other]), mask, proprio)
    both = denoise_branches(heads[0], params, x, t, memory)
    with torch.no_grad():
        torch.testing.assert_close(both[1], heads[1](x, t, other, mask, proprio), rtol=0, atol=1e-6)


def test_candidates_are_independent_and_memory_is_shared(heads):
    head = heads[0]
    x, t, tokens, mask, proprio = make_inputs()
    with torch.no_grad():
        eps = head(x, t, tokens, mask, proprio)
        perm = torch.tensor([4, 2, 0, 1, 3])
        torch.testing.assert_close(
            head(x[:, perm], t[:, perm], tokens, mask, proprio), eps[:, perm], rtol=0, atol=1e-5
        )
        x2 = x.clone()
        x2[:, 1:] += 1.0
        eps2 = head(x2, t, tokens, mask, proprio)
        torch.testing.assert_close(eps2[:, 0], eps[:, 0], rtol=0, atol=1e-5)
        assert not torch.allclose(eps2[:, 1:], eps[:, 1:])
        # a scalar timestep broadcasts over all candidates
        torch.testing.assert_close(
            head(x, torch.tensor(7), tokens, mask, proprio),
            head(x, torch.full((3, 5), 7), tokens, mask, proprio),
        )


def test_padding_tokens_are_ignored_and_conditioning_matters(heads):
    head = heads[0]
    x, t, tokens, mask, proprio = make_inputs()
    with torch.no_grad():
        eps = head(x, t, tokens, mask, proprio)
        garbage = tokens.clone()
        garbage[0, -4:] = 100.0  # masked out for observation 0
        torch.testing.assert_close(head(x, t, garbage, mask, proprio), eps, rtol=0, atol=1e-5)
        tokens2 = tokens.clone()
        tokens2[:, 0] += 1.0
        assert not torch.allclose(head(x, t, tokens2, mask, proprio), eps)
        assert not torch.allclose(head(x, t, tokens, mask, proprio + 1.0), eps)
        assert not torch.allclose(head(x, t + 1, tokens, mask, proprio), eps)


def test_bad_shapes_raise(heads):
    x, t, tokens, mask, proprio = make_inputs()
    with pytest.raises(ValueError, match="backbone tokens"):
        heads[0](x, t, tokens[..., :-1], mask, proprio)
    with pytest.raises(ValueError, match="proprio"):
        heads[0](x, t, tokens, mask, proprio[:, :-1])
    with pytest.raises(ValueError, match="x_t"):
        heads[0](x[:, :, :7], t, tokens, mask, proprio)


def test_conditioning_is_computed_per_observation_and_broadcast_over_candidates(heads):
    """With one t per observation, c = temb + proprio runs on B rows, not B * K, and changes nothing."""
    x, _, tokens, mask, proprio = make_inputs(b=3, k=5)
    t_obs = torch.tensor([3, 50, 97])
    params = stack_heads(heads)
    memory = prepare_branches(heads[0], params, tokens, mask, proprio)
    with torch.no_grad():
        c_obs = _time_conditioning(heads[0], params, t_obs, memory, 3, 5)
        c_rows = _time_conditioning(heads[0], params, t_obs[:, None].expand(3, 5), memory, 3, 5)
        assert c_obs.shape == (2, 3, 1, CFG.width) and c_rows.shape == (2, 3, 5, CFG.width)
        # the candidates' rows of the per-row computation equal the broadcast value (GEMM shape aside)
        torch.testing.assert_close(c_rows, c_obs.expand_as(c_rows), rtol=0, atol=1e-6)
        # ... and the broadcast value does not depend on how many candidates / omegas ride along: bit for bit
        assert torch.equal(_time_conditioning(heads[0], params, t_obs, memory, 3, 1), c_obs)
        eps_obs = denoise_branches(heads[0], params, x, t_obs, memory)
        eps_rows = denoise_branches(heads[0], params, x, t_obs[:, None].expand(3, 5), memory)
        torch.testing.assert_close(eps_obs, eps_rows, rtol=0, atol=1e-5)
        # the work saved is exactly (K - 1) * B rows of the time embedding and of every adaLN projection
        w, e = CFG.width, 2
        per_row = 2 * e * (2 * w * w + CFG.depth * w * 6 * w + w * 2 * w)
        saved = counted_flops(
            lambda: denoise_branches(heads[0], params, x, t_obs[:, None].expand(3, 5), memory)
        )
        saved -= counted_flops(lambda: denoise_branches(heads[0], params, x, t_obs, memory))
        assert saved == (5 - 1) * 3 * per_row
    with pytest.raises(ValueError, match="timesteps"):
        denoise_branches(heads[0], params, x, torch.zeros(3, 4), memory)


def test_inference_layout_keeps_branch_batching_exact(heads):
    x, t, tokens, mask, proprio = make_inputs()
    t = torch.tensor(42)  # sampling: one t for all
    packed = inference_params(stack_heads(heads))
    assert "blocks.0.qkv.weight" not in packed and packed["blocks.0.qkv.weight_t"].is_contiguous()
    assert packed["blocks.0.qkv.weight_t"].shape == (2, CFG.width, 3 * CFG.width)
    with torch.no_grad():
        both = denoise_branches(
            heads[0], packed, x, t, prepare_branches(heads[0], packed, tokens, mask, proprio)
        )
        for i, head in enumerate(heads):
            one = inference_params(stack_heads([head]))
            alone = denoise_branches(head, one, x, t, prepare_branches(head, one, tokens, mask, proprio))[0]
            assert torch.equal(both[i], alone)  # E = 2 == separate calls, bit for bit, in this layout too
            torch.testing.assert_close(alone, head(x, t, tokens, mask, proprio), rtol=0, atol=1e-5)


def test_batched_path_computes_what_the_modules_define(heads):
    """The branch-batched functions follow the submodules (found by object, not by a name string): a
    changed activation or an extra layer in an encoder changes the batched output like the module's."""
    head = heads[0]
    x, t, tokens, mask, proprio = make_inputs()
    with torch.no_grad():
        for act in (None, nn.GELU()):
            if act is not None:
                head.proprio.net[1] = act  # was SiLU
                head.proprio.net.append(nn.LayerNorm(CFG.width))
                head.time_embed.act = nn.Tanh()
            p = stack_heads([head])
            memory = prepare_branches(head, p, tokens, mask, proprio)
            torch.testing.assert_close(memory.cond[0], head.proprio(proprio), rtol=1e-6, atol=1e-6)
            c = _time_conditioning(head, p, t, memory, *t.shape)[0]
            temb = head.time_embed(head.time_proj(t.reshape(-1))).reshape(*t.shape, -1)
            torch.testing.assert_close(c, temb + head.proprio(proprio)[:, None], rtol=1e-6, atol=1e-6)
        head.proprio.net.append(nn.BatchNorm1d(CFG.width))  # parameters with no batched form: refused
        with pytest.raises(TypeError, match="BatchNorm1d in proprio.net"):
            prepare_branches(head, stack_heads([head]), tokens, mask, proprio)
