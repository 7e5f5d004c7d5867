"""peft LoRA on the LLM (OpenVLA defaults) and the ViTs, named multi-adapters, merge back to the checkpoint layout."""

import pytest
import torch
from peft import PeftModel

from vla_dipole.model.backbone import PrismaticBackbone
from vla_dipole.model.lora import active_adapter, merge_lora, set_active_adapter
from vla_dipole.model.openvla_checkpoint import from_openvla, save_openvla_layout


def _lora_config(tiny_config, **lora):
    return tiny_config.replace(lora={"enabled": True, **lora})


def test_defaults_follow_openvla_recipe(tiny_config):
    lora = tiny_config.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.init) == (
        32,
        16,
        0.0,
        "all-linear",
        "gaussian",
    )


def test_llm_lora_trains_only_adapters_on_all_linear_layers(make_inputs, tiny_config):
    torch.manual_seed(0)
    model = PrismaticBackbone(_lora_config(tiny_config, r=4))
    assert isinstance(model.language_model, PeftModel)
    trainable = {n for n, p in model.language_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    wrapped = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in trainable if ".lora_A." in n}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head" in n for n in trainable)
    pv, ids, mask = make_inputs(tiny_config, batch=2, n_images=1)
    model(pv, ids, mask).hidden.square().mean().backward()
    assert all(p.grad is not None for n, p in model.language_model.named_parameters() if "lora_B" in n)
    assert model.projector.fc1.weight.grad is not None
    assert all(p.grad is None for p in model.vision_backbone.parameters())


def test_vision_lora_targets_block_linears_only(make_inputs, tiny_config):
    model = PrismaticBackbone(tiny_config.replace(vision_mode="lora"))
    vit_trainable = [n for n, p in model.vision_backbone.named_parameters() if p.requires_grad]
    assert vit_trainable and all("lora_" in n for n in vit_trainable)
    assert not any("patch_embed" in n or "attn_pool" in n for n in vit_trainable)
    # LoRA of the unused last block stays frozen.
    assert not any(".blocks.2." in n for n in vit_trainable)
    assert any(".blocks.1.attn.qkv.lora_A" in n for n in vit_trainable)
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=1)
    model(pv, ids, mask).hidden.sum().backward()
    assert all(p.grad is not None for n, p in model.vision_backbone.named_parameters() if p.requires_grad)


@torch.no_grad()
def test_named_adapters_route_and_stay_trainable(make_inputs, tiny_config):
    torch.manual_seed(0)
    model = PrismaticBackbone(_lora_config(tiny_config, r=4, adapters=("pos", "neg"))).eval()
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=1)
    for name, p in model.language_model.named_parameters():
        if "lora_B.neg" in name:
            p.normal_(0, 0.5)
    set_active_adapter(model, "pos")
    assert active_adapter(model) == "pos"
    out_pos = model(pv, ids, mask).hidden
    set_active_adapter(model, "neg")
    out_neg = model(pv, ids, mask).hidden
    assert (out_pos - out_neg).abs().max() > 1e-3
    trainable = {n for n, p in model.language_model.named_parameters() if p.requires_grad}
    assert any(".pos." in n for n in trainable) and any(".neg." in n for n in trainable)
    with pytest.raises(ValueError, match="unknown LoRA adapter"):
        set_active_adapter(model, "other")


def test_both_branches_get_gradients_in_one_step(make_inputs, tiny_config):
    torch.manual_seed(0)
    model = PrismaticBackbone(_lora_config(tiny_config, r=4, adapters=("pos", "neg")))
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=1)
    set_active_adapter(model, "pos")
    loss = model(pv, ids, mask).hidden.square().mean()
    set_active_adapter(model, "neg")
    loss = loss + model(pv, ids, mask).hidden.square().mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.language_model.named_parameters() if "lora_B" in n}
    for branch in ("pos", "neg"):
        own = [g for n, g in grads.items() if f".{branch}." in n]
        assert own, f"no LoRA B matrix of adapter {branch!r} in the language model"
        assert all(g is not None and g.abs().sum() > 0 for g in own), branch


def test_merged_lora_saves_in_checkpoint_layout_and_reloads(
    tmp_path, make_inputs, tiny_config, tiny_tokenizer
):
    torch.manual_seed(0)
    model = PrismaticBackbone(_lora_config(tiny_config, r=4).replace(vision_mode="lora")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=1)
    with torch.no_grad():
        before = model.lm_logits(pv, ids, mask)
    with pytest.raises(ValueError, match="merge"):
        save_openvla_layout(model, tiny_tokenizer, tmp_path / "unmerged")
    merge_lora(model)
    save_openvla_layout(model, tiny_tokenizer, tmp_path / "merged")
    loaded = from_openvla(tmp_path / "merged", load_tokenizer_files=False).model
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().lm_logits(pv, ids, mask), before, rtol=1e-4, atol=1e-4)


def test_from_openvla_adds_lora_after_loading_base_weights(tmp_path, tiny_backbone, tiny_config):
    save_openvla_layout(tiny_backbone, None, tmp_path / "ckpt")
    overrides = {"lora": {"enabled": True, "r": 4}}
    loaded = from_openvla(tmp_path / "ckpt", overrides, load_tokenizer_files=False).model.eval()
    assert isinstance(loaded.language_model, PeftModel)
    pv = torch.randn(1, 1, 6, tiny_config.image_size, tiny_config.image_size)
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():  # fresh LoRA (B = 0) leaves the loaded base model's output unchanged
        torch.testing.assert_close(
            loaded.lm_logits(pv, ids, torch.ones_like(ids)),
            tiny_backbone.lm_logits(pv, ids, torch.ones_like(ids)),
        )
