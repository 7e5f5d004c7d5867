"""`diffusion.temperature`: the scale of the sampling start noise (the demo samples at 0.5)."""

from __future__ import annotations

import pytest
import torch

from vla_dipole.model.config import PolicyConfig


def _draws(policy, batch, temperature: float, seeds=(0, 1)) -> list[torch.Tensor]:
    policy.config.diffusion.temperature = temperature
    cond = policy.encode(batch)
    return [policy.sample(cond, [0.0, 1.0], generator=torch.Generator().manual_seed(s)) for s in seeds]


def test_temperature_scales_the_spread_of_samples(tiny_policy, batch):
    cold = _draws(tiny_policy, batch, 0.0)
    assert torch.equal(cold[0], cold[1])  # no noise left: the generator no longer matters
    spread = {t: float((a - b).abs().mean()) for t in (0.5, 1.0) for a, b in [_draws(tiny_policy, batch, t)]}
    assert 0.0 < spread[0.5] < spread[1.0], spread


def test_temperature_one_is_the_unscaled_sampler(tiny_policy, batch):
    """The default draws exactly what the sampler drew before the option existed: the start noise as is."""
    from diffusers.utils.torch_utils import randn_tensor

    cond = tiny_policy.encode(batch)
    noise = randn_tensor((cond.batch_size, 1, 8, 4), generator=torch.Generator().manual_seed(3))
    (start,) = _draws(tiny_policy, batch, 1.0, seeds=(3,))
    actions = tiny_policy._denoise(
        cond, [0], [0.0], noise, tiny_policy.config.diffusion.num_inference_steps, None
    )
    speed = None
    expected = tiny_policy.normalizer.denormalize(actions.float().permute(1, 0, 2, 3, 4), speed)[:, 0, 0]
    assert torch.allclose(start[:, 0], expected)


def test_negative_temperature_is_refused():
    config = PolicyConfig.preset("tiny").to_dict()
    config["diffusion"]["temperature"] = -0.1
    with pytest.raises(ValueError, match="diffusion.temperature"):
        PolicyConfig.from_dict(config, source="demo.yaml")
