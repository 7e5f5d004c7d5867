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
    torch.testing.assert_close(loaded.normalizer.std, torch.tensor([6.0, 1.5]))

    def sample(p):
        return p.sample(batch, [0.0, 2.0], num_steps=3, generator=torch.Generator().manual_seed(5))

    assert torch.equal(sample(loaded), sample(tiny_policy))
    enc_a, enc_b = tiny_policy.processor(batch), loaded.processor(batch)
    assert torch.equal(enc_a.input_ids, enc_b.input_ids) and torch.equal(enc_a.pixel_values, enc_b.pixel_values)


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
