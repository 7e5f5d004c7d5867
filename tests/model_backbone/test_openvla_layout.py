"""A full-size backbone built on the meta device has exactly the real openvla-7b tensor names and shapes."""

import torch

from vla_dipole.model.backbone import PrismaticBackbone
from vla_dipole.model.backbone_config import BackboneConfig
from vla_dipole.model.openvla_checkpoint import model_to_checkpoint_key
from vla_dipole.model.openvla_layout import openvla_7b_layout, unused_keys


def test_meta_full_size_model_matches_real_checkpoint_layout():
    with torch.device("meta"):
        model = PrismaticBackbone(BackboneConfig.preset("openvla-7b"))
    ours = {model_to_checkpoint_key(k): tuple(v.shape) for k, v in model.state_dict().items()}
    real = openvla_7b_layout()
    assert sorted(set(ours) - set(real)) == []
    assert sorted(set(real) - set(ours)) == []
    assert {k: v for k, v in ours.items() if real[k] != v} == {}
    assert model.num_patches == 256 and model.vision_backbone.embed_dim == 2176
    n_params = sum(p.numel() for p in model.parameters())
    assert 7.5e9 < n_params < 7.6e9
    assert abs(sum(p.numel() for p in model.projector.parameters()) - 71.4e6) < 0.1e6


def test_unused_tensors_are_the_documented_ones():
    real = openvla_7b_layout()
    unused = unused_keys(real)
    assert any(k.startswith("vision_backbone.featurizer.blocks.23.") for k in unused)
    assert any(k.startswith("vision_backbone.fused_featurizer.blocks.26.") for k in unused)
    assert not any(".blocks.22." in k or ".blocks.25." in k for k in unused)
    assert {k for k in unused if "attn_pool" in k} == {k for k in real if "attn_pool" in k}
    assert "vision_backbone.featurizer.norm.weight" in unused
    assert not any(k.startswith(("projector.", "language_model.")) for k in unused)
    # Pruning the model removes exactly these tensors.
    with torch.device("meta"):
        pruned = PrismaticBackbone(BackboneConfig.preset("openvla-7b").replace(prune_unused_vision=True))
    kept = {model_to_checkpoint_key(k) for k in pruned.state_dict()}
    assert kept == set(real) - unused
