"""save_pretrained / from_pretrained: exact round trip, no pickle, clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vla_dipole.model.policy import DipolePolicy


def test_round_trip_is_exact(tiny_policy, batch, tmp_path):
    tiny_policy.head_neg.out.bias.data += 0.1  # make the branches differ from any fresh init
    out = tiny_policy.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert all(f.endswith((".yaml", ".json", ".safetensors", ".jinja")) for f in files), files
    loaded = DipolePolicy.from_pretrained(out).eval()
    a, b = tiny_policy.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config == tiny_policy.config
    torch.testing.assert_close(loaded.normalizer.std[:, :2], torch.tensor([6.0, 1.5]).expand(8, 2))

    def sample(p):
        return p.sample(batch, [0.0, 2.0], num_steps=3, generator=torch.Generator().manual_seed(5))

    assert torch.equal(sample(loaded), sample(tiny_policy))
    enc_a, enc_b = tiny_policy.processor(batch), loaded.processor(batch)
    assert torch.equal(enc_a.input_ids, enc_b.input_ids) and torch.equal(
        enc_a.pixel_values, enc_b.pixel_values
    )


def test_load_errors_name_the_file(tiny_policy, tmp_path):
    out = tiny_policy.save_pretrained(tmp_path / "ckpt")
    heads = load_file(str(out / "heads.safetensors"))
    heads.pop("head_neg.out.weight")
    save_file(heads, str(out / "heads.safetensors"))
    with pytest.raises(ValueError, match=r"heads\.safetensors.*head_neg\.out\.weight"):
        DipolePolicy.from_pretrained(out)
    (out / "heads.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="heads.safetensors"):
        DipolePolicy.from_pretrained(out)


def test_format_version_is_checked(tiny_policy, tmp_path):
    out = tiny_policy.save_pretrained(tmp_path / "ckpt")
    (out / "policy_meta.json").write_text(json.dumps({"format_version": 99, "backbone_complete": True}))
    with pytest.raises(ValueError, match="format_version"):
        DipolePolicy.from_pretrained(out)


def test_pretrained_backbone_checkpoint_round_trip(tiny_config, batch, tmp_path):
    """Backbone from an OpenVLA-layout checkpoint: the policy saves only what it trains (LoRA adapters)."""
    import dataclasses

    from vla_dipole.model.backbone import PrismaticBackbone
    from vla_dipole.model.openvla_checkpoint import save_openvla_layout
    from vla_dipole.model.policy import build_tokenizer

    torch.manual_seed(1)
    base = PrismaticBackbone(tiny_config.backbone)
    save_openvla_layout(base, build_tokenizer(tiny_config), tmp_path / "openvla")
    cfg = dataclasses.replace(
        tiny_config,
        pretrained_backbone=str(tmp_path / "openvla"),
        tokenizer=str(tmp_path / "openvla"),
        branch_lora=dataclasses.replace(tiny_config.branch_lora, enabled=True, r=4),
    )
    policy = DipolePolicy.from_config(cfg).eval()
    base_state = base.state_dict()
    for k, v in policy.backbone.state_dict().items():  # peft wraps names: compare by the base-layer name
        plain = k.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" not in k:
            assert torch.equal(v, base_state[plain]), k
    with torch.no_grad():
        for n, p in policy.backbone.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    out = policy.save_pretrained(tmp_path / "ckpt")
    saved = load_file(str(out / "backbone.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    loaded = DipolePolicy.from_pretrained(out).eval()
    a, b = policy.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(loaded.sample(batch, [1.0], 3, gen()), policy.sample(batch, [1.0], 3, gen()))
