"""Tiny checkpoints written in the exact openvla-7b layout load back without remote code and reproduce logits."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vla_dipole.model.backbone import PrismaticBackbone
from vla_dipole.model.openvla_checkpoint import (
    CheckpointMismatchError,
    from_openvla,
    save_openvla_layout,
)
from vla_dipole.model.openvla_layout import openvla_7b_layout
from vla_dipole.model.prompt import driving_prompt_ids


@pytest.fixture()
def tiny_checkpoint(tmp_path, tiny_backbone, tiny_tokenizer):
    path = tmp_path / "openvla-tiny"
    files = save_openvla_layout(tiny_backbone, tiny_tokenizer, path, max_shard_size="400KB")
    return path, files


def test_written_layout_matches_the_real_repository(tiny_checkpoint, tiny_backbone):
    path, files = tiny_checkpoint
    assert len(files) >= 3
    assert [f.name for f in files] == [
        f"model-{i:05d}-of-{len(files):05d}.safetensors" for i in range(1, len(files) + 1)
    ]
    for name in (
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "added_tokens.json",
        "model.safetensors.index.json",
    ):
        assert (path / name).exists(), name
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["timm_model_ids"] == ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
    assert cfg["arch_specifier"] == "no-align+fused-gelu-mlp" and cfg["use_fused_vision_backbone"] is True
    assert cfg["timm_model_kwargs"][0] == {"embed_dim": 32, "depth": 3, "num_heads": 2}
    assert (
        cfg["pad_token_id"] == 256
        and cfg["pad_to_multiple_of"] == 64
        and cfg["text_config"]["vocab_size"] == 320
    )
    index = json.loads((path / "model.safetensors.index.json").read_text())
    real_names = set(openvla_7b_layout())
    # Same key naming as the real checkpoint: LayerScale saved as scale_factor, every key of a real family.
    keys = set(index["weight_map"])
    assert any(k.endswith("ls1.scale_factor") for k in keys) and not any(k.endswith(".gamma") for k in keys)
    assert keys <= real_names  # tiny depths are a prefix of the real ones
    on_disk = set()
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            on_disk |= set(sf.keys())
            assert all(index["weight_map"][k] == f.name for k in sf.keys())
    assert on_disk == keys and len(keys) == len(tiny_backbone.state_dict())


def test_round_trip_reproduces_logits_and_tokenizer(
    tiny_checkpoint, tiny_backbone, tiny_tokenizer, tiny_config
):
    path, _ = tiny_checkpoint
    loaded = from_openvla(path)  # tiny ViT sizes come from config.json's timm_model_kwargs
    assert loaded.config == tiny_config
    ids, mask = driving_prompt_ids(loaded.tokenizer, torch.eye(4), speeds=torch.tensor([1.0, 2.0, 3.0, 4.0]))
    ref_ids, ref_mask = driving_prompt_ids(
        tiny_tokenizer, torch.eye(4), speeds=torch.tensor([1.0, 2.0, 3.0, 4.0])
    )
    assert torch.equal(ids, ref_ids) and torch.equal(mask, ref_mask)
    pv = torch.randn(
        4, 2, 6, tiny_config.image_size, tiny_config.image_size, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        expected = tiny_backbone.lm_logits(pv, ids, mask)
        got = loaded.model.eval().lm_logits(pv, ids, mask)
    assert torch.equal(got, expected)
    assert not any(b.is_meta for b in loaded.model.buffers())
    assert loaded.raw_config["n_action_bins"] == 256


def test_bf16_checkpoint_loads_in_bf16_and_upcasts(tmp_path, tiny_backbone, tiny_tokenizer, tiny_config):
    path = tmp_path / "bf16"
    save_openvla_layout(tiny_backbone.to(torch.bfloat16), tiny_tokenizer, path)
    assert json.loads((path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    as_saved = from_openvla(path, load_tokenizer_files=False).model
    assert {p.dtype for p in as_saved.parameters()} == {torch.bfloat16}
    upcast = from_openvla(path, dtype=torch.float32, load_tokenizer_files=False).model
    for (name, a), b in zip(tiny_backbone.named_parameters(), upcast.parameters(), strict=True):
        assert torch.equal(a.float(), b), name
    pv = torch.randn(1, 1, 6, tiny_config.image_size, tiny_config.image_size)
    ids = torch.tensor([[1, 9, 8, 7]])
    with torch.no_grad():  # the bf16 model runs on float32 pixels and agrees with its fp32 copy
        low = as_saved.eval()(pv, ids, torch.ones_like(ids)).hidden
        high = upcast.eval()(pv, ids, torch.ones_like(ids)).hidden
    assert low.dtype == torch.bfloat16
    assert (low.float() - high).abs().mean() < 0.05 * high.abs().mean()


def _rewrite_first_shard(files, edit):
    state = load_file(str(files[0]))
    edit(state)
    save_file(state, str(files[0]), metadata={"format": "pt"})


def test_missing_unexpected_and_misshapen_tensors_are_listed(tiny_checkpoint, tiny_config):
    path, files = tiny_checkpoint
    first = sorted(load_file(str(files[0])))[0]

    def corrupt(state):
        state["vision_backbone.featurizer.mystery"] = torch.zeros(3)
        del state[first]

    _rewrite_first_shard(files, corrupt)
    with pytest.raises(CheckpointMismatchError) as err:
        from_openvla(path, load_tokenizer_files=False)
    assert "missing (1)" in str(err.value) and first in str(err.value)
    assert "unexpected (1)" in str(err.value) and "vision_backbone.featurizer.mystery" in str(err.value)


def test_wrong_shapes_and_wrong_config_are_reported(tiny_checkpoint, tiny_config):
    path, _ = tiny_checkpoint
    wider = {"llm": {"intermediate_size": 96}}
    with pytest.raises(CheckpointMismatchError, match="wrong shape .*mlp.gate_proj.weight") as err:
        from_openvla(path, wider, load_tokenizer_files=False)
    assert "missing" not in str(err.value) and "unexpected" not in str(err.value)
    cfg = json.loads((path / "config.json").read_text())
    del cfg["timm_model_ids"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config.json: missing field 'timm_model_ids'"):
        from_openvla(path)


def test_pruned_model_skips_exactly_the_unused_tensors(tiny_checkpoint, tiny_backbone, tiny_config):
    path, _ = tiny_checkpoint
    overrides = {"prune_unused_vision": True}
    pruned = from_openvla(path, overrides, load_tokenizer_files=False).model.eval()
    assert (
        len(pruned.vision_backbone.featurizer.blocks)
        == len(tiny_backbone.vision_backbone.featurizer.blocks) - 1
    )
    pv = torch.randn(1, 1, 6, tiny_config.image_size, tiny_config.image_size)
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        torch.testing.assert_close(
            pruned.lm_logits(pv, ids, torch.ones_like(ids)),
            tiny_backbone.lm_logits(pv, ids, torch.ones_like(ids)),
        )


def test_loaded_model_builds_from_fresh_config_not_remote_code(tiny_checkpoint, tiny_config):
    path, _ = tiny_checkpoint
    # No python file exists in the checkpoint dir, so nothing could have been imported from it.
    assert not list(path.glob("*.py"))
    loaded = from_openvla(path, {"vision_mode": "full"}, load_tokenizer_files=False)
    assert isinstance(loaded.model, PrismaticBackbone)
    assert loaded.model.vision_backbone.featurizer.blocks[0].attn.qkv.weight.requires_grad
    assert not loaded.model.vision_backbone.featurizer.blocks[-1].attn.qkv.weight.requires_grad


def test_cli_writes_a_loadable_tiny_checkpoint(tmp_path, tiny_config, capsys):
    from vla_dipole.model.openvla_checkpoint import main

    main(["--out", str(tmp_path / "cli"), "--seed", "3"])
    assert "wrote tiny" in capsys.readouterr().out
    loaded = from_openvla(tmp_path / "cli")
    assert loaded.config == tiny_config and loaded.tokenizer.pad_token_id == tiny_config.llm.pad_token_id
    ids, mask = driving_prompt_ids(loaded.tokenizer, torch.eye(4)[:2])
    pv = torch.zeros(2, 1, 6, tiny_config.image_size, tiny_config.image_size)
    out = loaded.model(pv, ids, mask)
    assert torch.isfinite(out.hidden).all() and out.hidden.shape[1] == ids.shape[1] + 16
