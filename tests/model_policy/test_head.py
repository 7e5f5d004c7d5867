"""The diffusion head: branch batching is exact, candidates are independent, padding is ignored."""

import pytest
import torch

from vla_dipole.model.config import HeadConfig
from vla_dipole.model.head import DiffusionTrajectoryHead, denoise_branches, prepare_branches, stack_heads
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
