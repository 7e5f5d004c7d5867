"""The policy on real batches (synthetic world -> scored shards -> the training data path)."""

import pytest
import torch


@pytest.mark.slow
def test_policy_consumes_loader_batches(synthetic_shards, tiny_policy):
    from vla_dipole.data.normalize import TrajectoryStats
    from vla_dipole.data.shard_io import read_manifest
    from vla_dipole.training.indexed_data import read_batch

    tiny_policy.set_trajectory_stats(read_manifest(synthetic_shards)["traj_stats"])
    batch = read_batch(synthetic_shards, 4)
    b, k = batch["candidates"].shape[:2]
    actions = tiny_policy.processor.trajectory_to_actions(batch["candidates"])
    # the normaliser matches the manifest statistics' normalisation of x, y
    norm = TrajectoryStats.from_manifest(synthetic_shards).normalize(batch["candidates"])
    torch.testing.assert_close(actions[..., :2], norm[..., :2])
    back = tiny_policy.processor.actions_to_trajectory(actions)
    torch.testing.assert_close(back, batch["candidates"], rtol=1e-4, atol=1e-4)
    cond = tiny_policy.encode(batch)
    err_pos, err_neg = tiny_policy.branch_errors(cond, actions)
    assert err_pos.shape == err_neg.shape == (b, k)
    traj = tiny_policy.sample(batch, [0.0, 1.0], num_steps=3, generator=torch.Generator().manual_seed(0))
    assert traj.shape == (b, 2, 8, 3) and torch.isfinite(traj).all()
