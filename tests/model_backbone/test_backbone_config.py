"""BackboneConfig presets, dict/YAML round trips, and reading the real openvla-7b config.json fields."""

import importlib.util

import pytest
import torch
import yaml

from vla_dipole.model.backbone_config import BackboneConfig, resolve_attn_implementation
from vla_dipole.model.openvla_checkpoint import config_from_openvla_json, openvla_config_json


def test_from_dict_with_preset_and_nested_overrides_round_trips():
    cfg = BackboneConfig.from_dict(
        {"preset": "tiny", "llm": {"num_hidden_layers": 3}, "lora": {"enabled": True}}
    )
    assert cfg.llm.num_hidden_layers == 3 and cfg.llm.hidden_size == 64 and cfg.lora.enabled
    assert cfg.featurizer.overrides == BackboneConfig.preset("tiny").featurizer.overrides
    again = BackboneConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg
    assert cfg.replace(lora={"adapters": ["pos", "neg"]}).lora.adapters == ("pos", "neg")


def test_unknown_fields_and_presets_are_named():
    with pytest.raises(ValueError, match=r"BackboneConfig\.llm: unknown field\(s\) \['hiden_size'\]"):
        BackboneConfig.from_dict({"llm": {"hiden_size": 3}})
    with pytest.raises(ValueError, match="unknown backbone preset 'huge'"):
        BackboneConfig.preset("huge")


def test_real_config_json_fields_give_the_openvla_7b_sizes(tmp_path):
    # What the openvla-7b config.json holds (text_config lists only non-default LlamaConfig fields).
    real = {
        "arch_specifier": "no-align+fused-gelu-mlp",
        "image_resize_strategy": "resize-naive",
        "image_sizes": [224, 224],
        "llm_backbone_id": "llama2-7b-pure",
        "llm_max_length": 2048,
        "model_type": "openvla",
        "n_action_bins": 256,
        "pad_to_multiple_of": 64,
        "pad_token_id": 32000,
        "text_config": {
            "model_type": "llama",
            "pad_token_id": 32000,
            "torch_dtype": "bfloat16",
            "vocab_size": 32064,
        },
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_override_act_layers": [None, None],
        "torch_dtype": "bfloat16",
        "use_fused_vision_backbone": True,
        "vision_backbone_id": "dinosiglip-vit-so-224px",
    }
    cfg = config_from_openvla_json(real, tmp_path / "config.json")
    assert cfg == BackboneConfig.preset("openvla-7b")
    assert cfg.llm.rms_norm_eps == 1e-6  # the HF port's LlamaConfig default
    written = openvla_config_json(cfg, "bfloat16")
    assert written["text_config"] == real["text_config"]
    assert {k: written[k] for k in real} == real
    assert "timm_model_kwargs" not in written  # stock sizes: exactly the real fields
    tiny = openvla_config_json(BackboneConfig.preset("tiny"), "float32")
    assert config_from_openvla_json(tiny, tmp_path / "config.json") == BackboneConfig.preset("tiny")
    bad = real | {"arch_specifier": "no-align+gelu-mlp"}
    with pytest.raises(ValueError, match="config.json: field 'arch_specifier'"):
        config_from_openvla_json(bad, tmp_path / "config.json")


def test_attention_implementation_auto_falls_back_to_sdpa_without_flash_attn():
    assert resolve_attn_implementation("eager") == "eager"
    expected = "sdpa"
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        expected = "flash_attention_2"
    assert resolve_attn_implementation("auto") == expected
