"""PolicyConfig presets and YAML validation."""

import pytest

from vla_dipole.model.config import PolicyConfig


def test_presets_load_with_their_sizes():
    tiny, small, big = (PolicyConfig.preset(n) for n in ("tiny", "small", "openvla-7b"))
    assert tiny.head.width == 128 and tiny.backbone.llm.num_hidden_layers == 2
    assert small.head.width > tiny.head.width and small.backbone.image_size == 112
    assert big.backbone.llm.hidden_size == 4096 and big.backbone.llm.num_hidden_layers == 32
    assert big.head.width == 1024 and big.head.depth == 12
    assert tiny.diffusion.num_inference_steps <= 10 and big.diffusion.num_inference_steps <= 10
    assert tiny.observation.proprio_dim == 12 and small.observation.proprio_dim == 36


def test_yaml_round_trip(tmp_path):
    cfg = PolicyConfig.preset("small")
    cfg.save_yaml(tmp_path / "m.yaml")
    assert PolicyConfig.from_yaml(tmp_path / "m.yaml") == cfg


@pytest.mark.parametrize(
    "text, match",
    [
        ("head:\n  widht: 64\n", "widht"),
        ("colour: red\n", "colour"),
        ("backbone:\n  preset: tiny\n  llm: {hiden_size: 3}\n", "hiden_size"),
        ("head:\n  width: 100\n  num_heads: 3\n", "head.width"),
        ("diffusion:\n  solver: euler\n", "diffusion.solver"),
        ("head:\n  width: lots\n", "width"),
    ],
)
def test_bad_yaml_names_file_and_field(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        PolicyConfig.from_yaml(path)
    assert "bad.yaml" in str(err.value)


def test_unknown_preset():
    with pytest.raises(ValueError, match="known presets"):
        PolicyConfig.preset("huge")
