"""The backbone pretraining (`python -m vla_dipole.pretrain`): its targets, its output, and that a fresh
policy with `backbone_init` starts from exactly those weights."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.policy import BACKBONE_FILE, DipolePolicy
from vla_dipole.pretrain import LATERAL_SCALE, lane_targets


def test_lane_targets_follow_the_road(synthetic_root):
    """The route lane ahead: about straight on the straight road; where the logged driver bends by
    metres on the curve, the lane bends the same way."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    loader = SceneLoader("train", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=2))
    bends: dict[str, list[tuple[float, float]]] = {}
    for token in loader.tokens:
        scene = loader.get_scene(token)
        family = scene.metadata.log_name.split("_", 4)[-1]
        lateral_40m = float(lane_targets(scene)[8]) * LATERAL_SCALE
        bends.setdefault(family, []).append((lateral_40m, float(scene.get_future_trajectory(8)[-1, 1])))
    straight = np.array(bends["lane_follow_straight"])
    curve = np.array([b for b in bends["lane_follow_curve"] if abs(b[1]) > 3.0])
    assert np.abs(straight[:, 0]).max() < 2.5, straight
    assert len(curve) >= 2, bends["lane_follow_curve"]
    assert (np.abs(curve[:, 0]) > 1.5).all() and (np.sign(curve[:, 0]) == np.sign(curve[:, 1])).all(), curve


def test_pretrained_backbone_is_what_backbone_init_loads(synthetic_shards, tmp_path):
    out = tmp_path / "pretrain"
    args = ["--shards", str(synthetic_shards), "--model", "tiny", "--out", str(out)]
    cmd = [sys.executable, "-m", "vla_dipole.pretrain", *args, "--steps", "4", "--batch-size", "8"]
    subprocess.run(cmd, check=True, timeout=600)
    meta = json.loads((out / "pretrain_meta.json").read_text())
    assert meta["steps"] == 4 and meta["targets"] == {"lane": 18, "future": 32}
    assert np.isfinite([h["lane"] + h["future"] for h in meta["history"]]).all()

    torch.manual_seed(0)
    fresh = DipolePolicy.from_config(PolicyConfig.preset("tiny"))
    torch.manual_seed(0)
    config = PolicyConfig.preset("tiny")
    config.backbone_init = str(out)
    loaded = DipolePolicy.from_config(config)
    from vla_dipole.model.checked_safetensors import load_checked

    saved = load_checked(out / BACKBONE_FILE)
    state = loaded.backbone.state_dict()
    assert set(saved) == set(state)
    assert all(torch.equal(saved[k], state[k]) for k in saved)
    moved = [k for k, v in fresh.backbone.state_dict().items() if not torch.equal(v, state[k])]
    assert any("vision_backbone" in k for k in moved) and any("language_model" in k for k in moved)
    # the loaded backbone stays frozen as the model config says (features can be cached)
    assert not any(p.requires_grad for p in loaded.backbone.parameters())


def test_backbone_init_names_a_missing_file(tmp_path):
    config = PolicyConfig.preset("tiny")
    config.backbone_init = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="backbone_init.*backbone.safetensors"):
        DipolePolicy.from_config(config)
