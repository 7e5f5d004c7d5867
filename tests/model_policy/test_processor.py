"""DrivingProcessor and TrajectoryNormalizer."""

import dataclasses

import pytest
import torch

from vla_dipole.model.obs_encoder import ego_features
from vla_dipole.model.policy import build_tokenizer
from vla_dipole.model.processor import DrivingProcessor, TrajectoryNormalizer


@pytest.fixture(scope="module")
def tokenizer():
    from vla_dipole.model.config import PolicyConfig

    return build_tokenizer(PolicyConfig.preset("tiny"))


def processor_for(tiny_config, tokenizer, **obs):
    cfg = dataclasses.replace(tiny_config, observation=dataclasses.replace(tiny_config.observation, **obs))
    return DrivingProcessor(cfg, tokenizer)


def test_trajectory_round_trip_and_heading_wrap():
    norm = TrajectoryNormalizer()
    norm.set_stats({"mean": [10.0, -1.0, 0.3], "std": [5.0, 2.0, 1.0]})
    traj = torch.tensor([[[3.0, 1.0, 0.5], [12.0, -4.0, 3.0], [1.0, 2.0, -3.1]]])
    actions = norm.normalize(traj)
    assert actions.shape == (1, 3, 4)
    torch.testing.assert_close(actions[0, 0, :2], torch.tensor([-1.4, 1.0]))
    torch.testing.assert_close(actions[..., 2] ** 2 + actions[..., 3] ** 2, torch.ones(1, 3))
    torch.testing.assert_close(norm.denormalize(actions), traj)
    wrapped = norm.denormalize(norm.normalize(torch.tensor([[0.0, 0.0, 4.0]])))
    torch.testing.assert_close(wrapped[0, 2], torch.tensor(4.0 - 2 * torch.pi))
    with pytest.raises(ValueError, match="std > 0"):
        norm.set_stats({"mean": [0, 0], "std": [0, 1]})


def test_residual_per_waypoint_actions_round_trip():
    # residual: the constant-velocity rollout maps to x = 0; per-waypoint stats standardise each pose
    norm = TrajectoryNormalizer(horizon=8, residual=True)
    t = 0.5 * torch.arange(1, 9)
    speed = torch.tensor([4.0, 10.0])
    cv = torch.stack([speed[:, None] * t, torch.zeros(2, 8), torch.zeros(2, 8)], -1)
    torch.testing.assert_close(norm.normalize(cv, speed)[..., 0], torch.zeros(2, 8))
    g = torch.Generator().manual_seed(0)
    traj = cv + torch.randn(2, 8, 3, generator=g) * torch.tensor([0.5, 0.3, 0.05]) * t[:, None]
    norm.fit(traj.repeat(4, 1, 1), speed.repeat(4))
    actions = norm.normalize(traj, speed)
    torch.testing.assert_close(actions[..., :2].mean(0), torch.zeros(8, 2), atol=1e-5, rtol=0)
    assert bool((norm.std[:, 0] > 0).all()) and norm.std[0, 0] < norm.std[-1, 0]  # grows with the horizon
    torch.testing.assert_close(norm.denormalize(actions, speed), traj, atol=1e-5, rtol=0)
    # candidates [B, K, L, 3] share their observation's speed [B]
    cands = traj[:, None].expand(2, 3, 8, 3)
    torch.testing.assert_close(
        norm.denormalize(norm.normalize(cands, speed), speed), cands, atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="speed"):
        norm.normalize(traj)


def test_batch_and_single_sample_agree(tiny_config, tokenizer, batch_factory):
    proc = processor_for(tiny_config, tokenizer)
    batch = batch_factory(batch_size=2)
    x = proc(batch)
    s = x.input_ids.shape[1]
    assert x.pixel_values.shape == (2, 1, 6, tiny_config.backbone.image_size, tiny_config.backbone.image_size)
    assert x.proprio.shape == (2, tiny_config.observation.proprio_dim) and x.attention_mask.shape == (2, s)
    single = proc({k: v[1] for k, v in batch.items()})
    assert torch.equal(single.pixel_values[0], x.pixel_values[1]) and torch.equal(
        single.proprio[0], x.proprio[1]
    )
    n = int(single.attention_mask.sum())
    assert torch.equal(single.input_ids[0, :n], x.input_ids[1, :n])
    # the prompt carries the command: changing it changes the ids
    other = dict(batch, driving_command=torch.roll(batch["driving_command"], 1, dims=-1))
    assert not torch.equal(proc(other).input_ids, x.input_ids)


def test_history_frames_and_cameras(tiny_config, tokenizer, batch_factory):
    batch = batch_factory(batch_size=2, history=3, cameras=2)
    proc = processor_for(
        tiny_config, tokenizer, cameras=["cam_f0", "cam_l0"], history_frames=2, ego_history=3
    )
    x = proc(batch)
    assert x.pixel_values.shape[1] == 4
    last = processor_for(tiny_config, tokenizer, cameras=["cam_f0", "cam_l0"], history_frames=1)(batch)
    assert torch.equal(x.pixel_values[:, 2:], last.pixel_values)  # history-major: the last frame's cameras
    f = ego_features(
        batch["ego_pose"], batch["ego_velocity"], batch["ego_acceleration"], batch["driving_command"], 3
    )
    assert torch.equal(x.proprio, f)
    torch.testing.assert_close(f[:, :2], batch["ego_pose"][:, 0, :2] / 10)
    with pytest.raises(ValueError, match="ego_history=5"):
        processor_for(tiny_config, tokenizer, ego_history=5)(batch)
    with pytest.raises(ValueError, match="cameras"):
        processor_for(tiny_config, tokenizer, cameras=["a", "b", "c", "d"])(batch)


def test_missing_field_and_precomputed_pixels(tiny_config, tokenizer, batch_factory):
    proc = processor_for(tiny_config, tokenizer)
    batch = batch_factory(batch_size=2)
    with pytest.raises(KeyError, match="ego_velocity"):
        proc({k: v for k, v in batch.items() if k != "ego_velocity"})
    pix = proc(batch).pixel_values
    pre = {k: v for k, v in batch.items() if k != "images"} | {"pixel_values": pix}
    assert torch.equal(proc(pre).pixel_values, pix)
