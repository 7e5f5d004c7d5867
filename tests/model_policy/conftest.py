"""Fixtures for the policy tests: one tiny policy per session (copied per test) and synthetic batches."""

import copy

import pytest
import torch

from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.policy import DipolePolicy


@pytest.fixture(autouse=True)
def _single_thread():
    # The CI box is shared: intra-op threads fighting over 2 cores make small ops ~10x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_config() -> PolicyConfig:
    return PolicyConfig.preset("tiny")


@pytest.fixture(scope="session")
def _tiny_policy(tiny_config) -> DipolePolicy:
    torch.manual_seed(0)
    policy = DipolePolicy(tiny_config)
    policy.set_trajectory_stats({"mean": [8.0, 0.1, 0.0], "std": [6.0, 1.5, 1.0]})
    return policy.eval()


@pytest.fixture
def tiny_policy(_tiny_policy) -> DipolePolicy:
    """A fresh copy: tests may train or overwrite it."""
    return copy.deepcopy(_tiny_policy)


def make_batch(
    batch_size: int = 3, history: int = 1, cameras: int = 1, num_candidates: int = 4, seed: int = 0
):
    """A loader-style batch (docs/shards.md) with plausible driving numbers."""
    g = torch.Generator().manual_seed(seed)
    b, h = batch_size, history
    t = torch.arange(1, 9, dtype=torch.float32) * 0.5
    speed = 2 + 8 * torch.rand(b, 1, generator=g)
    human = torch.stack(
        [speed * t, 0.05 * speed * t**2 * torch.randn(b, 1, generator=g), 0.02 * t.expand(b, 8)], -1
    )
    cmd = torch.nn.functional.one_hot(torch.randint(0, 4, (b, h), generator=g), 4).float()
    pose = torch.zeros(b, h, 3)
    pose[:, :, 0] = -speed * 0.5 * torch.arange(h - 1, -1, -1, dtype=torch.float32)
    return {
        "images": torch.randint(0, 256, (b, h * cameras, 36, 64, 3), dtype=torch.uint8, generator=g),
        "ego_pose": pose,
        "ego_velocity": torch.cat([speed, torch.zeros(b, 1)], -1)[:, None].expand(b, h, 2).clone(),
        "ego_acceleration": 0.3 * torch.randn(b, h, 2, generator=g),
        "driving_command": cmd,
        "human": human,
        "candidates": human[:, None] + 0.5 * torch.randn(b, num_candidates, 8, 3, generator=g),
    }


@pytest.fixture
def batch():
    return make_batch()


@pytest.fixture
def batch_factory():
    return make_batch
