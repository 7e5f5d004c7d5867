"""Schedules in samples: the same sample stream and LR curve on any number of devices."""

import numpy as np
import pytest

from vla_dipole.training.config import ConfigError
from vla_dipole.training.schedule import SampleOrder, lr_at, plan_batches


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_positions_cover_each_step_exactly(world: int) -> None:
    plan = plan_batches(global_batch=32, micro_batch=4, world_size=world, total_samples=100)
    assert plan.grad_accum * plan.micro_batch * world == 32
    assert plan.total_steps == 4  # ceil(100 / 32)
    for step in range(3):
        got = np.concatenate(
            [plan.positions(step, m, r) for m in range(plan.grad_accum) for r in range(world)]
        )
        assert sorted(got.tolist()) == list(range(step * 32, (step + 1) * 32))


def test_not_divisible_is_a_clear_error() -> None:
    with pytest.raises(
        ConfigError, match=r"global_batch'=30 is not divisible by .*\(4\) x world size \(2\) = 8"
    ):
        plan_batches(global_batch=30, micro_batch=4, world_size=2, total_samples=100)


def test_lr_curve() -> None:
    kw = dict(base_lr=1.0, warmup_samples=100, total_samples=1100, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == 0.0
    assert lr_at(50, **kw) == pytest.approx(0.5)
    assert lr_at(100, **kw) == pytest.approx(1.0)
    assert lr_at(600, **kw) == pytest.approx(0.55)  # half-way through the cosine: (1 + 0.1) / 2
    assert lr_at(1100, **kw) == pytest.approx(0.1)
    assert lr_at(5000, **kw) == pytest.approx(0.1)
    curve = [lr_at(s, **kw) for s in range(100, 1101, 50)]
    assert all(a >= b for a, b in zip(curve, curve[1:], strict=False))  # monotone decay after warmup


def test_lr_same_for_any_world_size() -> None:
    """The LR at optimizer step k depends only on samples seen, so 1 and 8 devices agree."""
    lrs = []
    for world in (1, 8):
        plan = plan_batches(64, 8 // world if world < 8 else 1, world, 640)
        lrs.append([lr_at((k + 1) * plan.global_batch, 1e-3, 128, 640, 0.0) for k in range(plan.total_steps)])
    assert lrs[0] == lrs[1]


def test_sample_order_is_a_permutation_per_epoch_and_deterministic() -> None:
    order = SampleOrder(10, seed=3)
    first = order.indices(np.arange(0, 10))
    second = order.indices(np.arange(10, 20))
    assert sorted(first.tolist()) == list(range(10)) and sorted(second.tolist()) == list(range(10))
    assert first.tolist() != second.tolist()  # reshuffled every epoch
    assert (
        SampleOrder(10, seed=3).indices(np.arange(5, 15)).tolist()
        == np.concatenate([first[5:], second[:5]]).tolist()
    )
    assert SampleOrder(10, seed=4).indices(np.arange(10)).tolist() != first.tolist()
