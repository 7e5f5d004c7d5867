"""The evaluator feeds the policy exactly what training fed it, and its samples do not depend on batching."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from navsim_adapter.scene_loader import SceneFilter, SceneLoader
from vla_dipole.data.collate import collate
from vla_dipole.data.observation import scene_observation
from vla_dipole.inference import PolicyRunner, checkpoint_spec, observation_seed


def test_spec_comes_from_the_checkpoint_and_its_training_shards(tiny_bc_policy, synthetic_shards):
    manifest = json.loads((synthetic_shards / "manifest.json").read_text())
    spec = checkpoint_spec(tiny_bc_policy)
    assert spec.cameras == ("cam_f0",) and spec.history_frames == 1
    assert list(spec.image_size) == manifest["image"]["size"] == [64, 36]
    assert spec.jpeg_quality == manifest["image"]["quality"]


def test_moved_checkpoint_keeps_its_spec_and_unbound_policies_need_observation_json(tiny_bc_policy, tmp_path):
    ckpt = tmp_path / "moved"  # a checkpoint copied away from its run: no config.yaml next to it
    shutil.copytree(tiny_bc_policy, ckpt)
    assert checkpoint_spec(ckpt).image_size == (64, 36)  # recorded in policy_config.yaml
    config = ckpt / "policy_config.yaml"  # a policy never trained on shards: image_size null
    config.write_text(config.read_text().replace("image_size:\n  - 64\n  - 36", "image_size: null"))
    with pytest.raises(ValueError, match=r"policy_config.yaml: field 'observation.image_size' is null"):
        checkpoint_spec(ckpt)
    (ckpt / "observation.json").write_text(json.dumps({"image_size": [32, 18], "jpeg_quality": 75}))
    spec = checkpoint_spec(ckpt)
    assert spec.image_size == (32, 18) and spec.jpeg_quality == 75
    (ckpt / "observation.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"observation\.json: not valid JSON"):
        checkpoint_spec(ckpt)
    (ckpt / "observation.json").write_text(json.dumps({"image_size": [32]}))
    with pytest.raises(ValueError, match=r"'image_size' must be \[W, H\]"):
        checkpoint_spec(ckpt)


def test_scene_observation_equals_the_training_sample(tiny_bc_policy, synthetic_root, synthetic_shards):
    from vla_dipole.training.indexed_data import IndexedShards

    shards = IndexedShards([synthetic_shards])
    spec = checkpoint_spec(tiny_bc_policy)
    loader = SceneLoader("train", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1))
    for i in (0, len(shards) - 1):
        sample = shards[i]
        ours = scene_observation(loader.get_scene(sample["token"]), spec)
        assert ours["images"].shape == sample["images"].shape
        assert np.array_equal(ours["images"], sample["images"])  # same resize + JPEG bytes
        for key in ("ego_pose", "ego_velocity", "ego_acceleration", "driving_command", "human"):
            np.testing.assert_allclose(ours[key], sample[key], atol=1e-5, err_msg=key)


def test_samples_depend_on_the_observation_not_on_the_batch(tiny_bc_policy, synthetic_root, one_thread):
    runner = PolicyRunner.from_checkpoint(tiny_bc_policy, num_steps=2)
    loader = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=2))
    obs = [scene_observation(loader.get_scene(t), runner.spec) for t in loader.tokens[:3]]
    together = runner.sample(obs, [0.0, 1.0])
    assert together.shape == (3, 2, 8, 3) and np.isfinite(together).all()
    assert np.array_equal(runner.sample(obs[1:2], [0.0, 1.0])[0], together[1])  # bit for bit
    assert np.array_equal(runner.sample(obs[2:3], [1.0])[0, 0], together[2, 1])  # omega sweep = one omega
    renamed = {**obs[1], "token": "another-token", "log_name": "another-log"}
    assert np.array_equal(runner.sample([renamed], [0.0])[0, 0], together[1, 0])  # token-free noise
    generator = torch.Generator().manual_seed(observation_seed(0, obs[2]))  # the documented convention
    with torch.no_grad():
        direct = runner.policy.sample(collate(obs[2:3]), [0.0, 1.0], num_steps=2, generator=generator)
    assert np.array_equal(direct.float().numpy(), together[2:3])
    reseeded = PolicyRunner.from_checkpoint(tiny_bc_policy, num_steps=2, seed=1).sample(obs[1:2], [0.0])
    assert not np.allclose(reseeded[0, 0], together[1, 0], atol=1e-2)
