"""PrismaticBackbone: splicing after BOS, second-to-last-block features, padding, trainability."""

import pytest
import torch

from vla_dipole.model.backbone import PrismaticBackbone


def test_output_shapes_and_mask(make_inputs, tiny_backbone, tiny_config):
    pv, ids, mask = make_inputs(tiny_config, batch=2, n_images=3, length=7)
    mask[1, 4:] = 0
    out = tiny_backbone(pv, ids, mask, return_logits=True)
    p = tiny_backbone.num_patches
    assert p == (tiny_config.image_size // 14) ** 2
    t = 7 + 3 * p
    assert out.hidden.shape == (2, t, tiny_backbone.hidden_size)
    assert out.logits.shape == (2, t, tiny_config.llm.vocab_size)
    assert out.mask[:, : 1 + 3 * p].all()
    assert out.mask[1, 1 + 3 * p + 3 :].eq(0).all() and out.mask[0].all()


@torch.no_grad()
def test_patches_spliced_after_bos_in_image_order(make_inputs, tiny_backbone, tiny_config):
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=2)
    model = tiny_backbone
    out = model(pv, ids, mask)
    # Reference: build [BOS, img0 patches, img1 patches, rest] by hand and run the decoder.
    patches = [model.projector(model.vision_backbone(pv[:, i])) for i in range(2)]
    emb = model.language_model.get_input_embeddings()(ids)
    ref_in = torch.cat([emb[:, :1], *patches, emb[:, 1:]], dim=1)
    ref = model.language_model.model(inputs_embeds=ref_in).last_hidden_state
    torch.testing.assert_close(out.hidden, ref, rtol=1e-5, atol=1e-5)
    # Causality: changing the second image leaves BOS and the first image's positions untouched.
    pv2 = pv.clone()
    pv2[:, 1] += 1.0
    out2 = model(pv2, ids, mask)
    p = model.num_patches
    torch.testing.assert_close(out2.hidden[:, : 1 + p], out.hidden[:, : 1 + p])
    assert (out2.hidden[:, 1 + p :] - out.hidden[:, 1 + p :]).abs().max() > 1e-3


@torch.no_grad()
def test_features_come_from_second_to_last_block_without_norm(tiny_backbone, tiny_config):
    vb = tiny_backbone.vision_backbone
    x = torch.randn(2, 6, tiny_config.image_size, tiny_config.image_size)
    feats = vb(x)
    dino = vb.featurizer
    h = dino._pos_embed(dino.patch_embed(x[:, :3]))
    for blk in dino.blocks[:-1]:
        h = blk(h)
    torch.testing.assert_close(feats[..., : dino.embed_dim], h[:, dino.num_prefix_tokens :])
    assert dino.num_prefix_tokens == 5  # cls + 4 registers
    # The last blocks and the final norms never reach the output.
    for vit in (vb.featurizer, vb.fused_featurizer):
        vit.blocks[-1].attn.qkv.weight.add_(1.0)
        vit.norm.weight.mul_(3.0)
    torch.testing.assert_close(vb(x), feats)
    assert feats.shape == (2, tiny_backbone.num_patches, vb.embed_dim)


@torch.no_grad()
def test_right_padding_does_not_change_valid_positions(make_inputs, tiny_backbone, tiny_config):
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=1, length=6)
    short = tiny_backbone(pv, ids[:, :4], mask[:, :4]).hidden
    padded_ids = ids.clone()
    padded_ids[:, 4:] = tiny_config.llm.pad_token_id
    pad_mask = mask.clone()
    pad_mask[:, 4:] = 0
    padded = tiny_backbone(pv, padded_ids, pad_mask).hidden
    torch.testing.assert_close(padded[:, : short.shape[1]], short, rtol=1e-5, atol=1e-5)


def test_suffix_embeds_are_appended_and_attended(make_inputs, tiny_backbone, tiny_config):
    pv, ids, mask = make_inputs(tiny_config, batch=2, n_images=1, length=5)
    suffix = torch.randn(2, 3, tiny_backbone.hidden_size)
    out = tiny_backbone(pv, ids, mask, suffix_embeds=suffix)
    assert out.hidden.shape[1] == 5 + tiny_backbone.num_patches + 3
    assert out.mask[:, -3:].all()


def test_frozen_vision_gets_no_grad_and_prune_matches(make_inputs, tiny_config):
    torch.manual_seed(0)
    model = PrismaticBackbone(tiny_config)
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=1)
    model(pv, ids, mask).hidden.sum().backward()
    assert all(p.grad is None for p in model.vision_backbone.parameters())
    assert model.projector.fc1.weight.grad is not None
    assert model.language_model.model.layers[0].mlp.up_proj.weight.grad is not None

    full = PrismaticBackbone(tiny_config.replace(vision_mode="full"))
    unused = [n for n, p in full.vision_backbone.named_parameters() if not p.requires_grad]
    assert any(".blocks.2." in n for n in unused) and any("attn_pool" in n for n in unused)
    pruned = PrismaticBackbone(tiny_config.replace(prune_unused_vision=True)).eval()
    missing, unexpected = pruned.load_state_dict(full.state_dict(), strict=False)
    assert (
        not missing
        and unexpected
        and all(n in unused for n in (u.split("vision_backbone.")[1] for u in unexpected))
    )
    with torch.no_grad():
        torch.testing.assert_close(pruned(pv, ids, mask).hidden, full.eval()(pv, ids, mask).hidden)


def test_gradient_checkpointing_gives_same_grads(make_inputs, tiny_config):
    pv, ids, mask = make_inputs(tiny_config, batch=1, n_images=1)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = PrismaticBackbone(
            tiny_config.replace(gradient_checkpointing=ckpt, vision_mode="full")
        ).train()
        model(pv, ids, mask).hidden.square().mean().backward()
        grads.append(model.vision_backbone.featurizer.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_bad_pixel_shape_is_reported(make_inputs, tiny_backbone, tiny_config):
    _, ids, mask = make_inputs(tiny_config)
    with pytest.raises(ValueError, match="pixel_values"):
        tiny_backbone(torch.randn(2, 1, 3, 56, 56), ids, mask)
