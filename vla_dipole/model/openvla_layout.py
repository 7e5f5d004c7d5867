"""The real ``openvla/openvla-7b`` checkpoint layout (tensor names and shapes), written out from the facts.

Public API:
- ``openvla_7b_layout() -> dict[str, tuple[int, ...]]``: every tensor of the HF checkpoint
  (``model.safetensors.index.json``'s weight_map keys) with its shape, in checkpoint naming
  (DINOv2 LayerScale as ``ls1.scale_factor`` / ``ls2.scale_factor``).
- ``unused_keys(layout) -> set[str]``: the tensors present in the checkpoint that never affect the output
  (each ViT's last block and final norm, SigLIP's ``attn_pool``), as the released weights leave them unused.
- ``is_unused_key(key, dino_depth, siglip_depth) -> bool``: the same rule for any depth (tiny checkpoints).

Source: the released openvla/openvla-7b checkpoint's config.json and weight map (DINOv2-L/14 reg4: 1024 wide, 24 blocks, MLP 4096;
SigLIP So400M/14: 1152 wide, 27 blocks, MLP 4304, no class token, MAP head; fused projector
2176 -> 8704 -> 4096 -> 4096; Llama-2-7B with a 32064-token vocabulary, untied lm_head).
"""

from __future__ import annotations

import re

DINO = "vision_backbone.featurizer"
SIGLIP = "vision_backbone.fused_featurizer"
LLM = "language_model"


def _vit_blocks(prefix: str, depth: int, dim: int, mlp: int, layer_scale: bool) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for i in range(depth):
        b = f"{prefix}.blocks.{i}"
        out |= {
            f"{b}.norm1.weight": (dim,),
            f"{b}.norm1.bias": (dim,),
            f"{b}.attn.qkv.weight": (3 * dim, dim),
            f"{b}.attn.qkv.bias": (3 * dim,),
            f"{b}.attn.proj.weight": (dim, dim),
            f"{b}.attn.proj.bias": (dim,),
            f"{b}.norm2.weight": (dim,),
            f"{b}.norm2.bias": (dim,),
            f"{b}.mlp.fc1.weight": (mlp, dim),
            f"{b}.mlp.fc1.bias": (mlp,),
            f"{b}.mlp.fc2.weight": (dim, mlp),
            f"{b}.mlp.fc2.bias": (dim,),
        }
        if layer_scale:
            out |= {f"{b}.ls1.scale_factor": (dim,), f"{b}.ls2.scale_factor": (dim,)}
    return out


def _vit(prefix: str, depth: int, dim: int, mlp: int, patches: int, dino: bool) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    if dino:
        out |= {f"{prefix}.cls_token": (1, 1, dim), f"{prefix}.reg_token": (1, 4, dim)}
    out |= {
        f"{prefix}.pos_embed": (1, patches, dim),
        f"{prefix}.patch_embed.proj.weight": (dim, 3, 14, 14),
        f"{prefix}.patch_embed.proj.bias": (dim,),
    }
    out |= _vit_blocks(prefix, depth, dim, mlp, layer_scale=dino)
    out |= {f"{prefix}.norm.weight": (dim,), f"{prefix}.norm.bias": (dim,)}
    if not dino:
        p = f"{prefix}.attn_pool"
        out |= {
            f"{p}.latent": (1, 1, dim),
            f"{p}.q.weight": (dim, dim),
            f"{p}.q.bias": (dim,),
            f"{p}.kv.weight": (2 * dim, dim),
            f"{p}.kv.bias": (2 * dim,),
            f"{p}.proj.weight": (dim, dim),
            f"{p}.proj.bias": (dim,),
            f"{p}.norm.weight": (dim,),
            f"{p}.norm.bias": (dim,),
            f"{p}.mlp.fc1.weight": (mlp, dim),
            f"{p}.mlp.fc1.bias": (mlp,),
            f"{p}.mlp.fc2.weight": (dim, mlp),
            f"{p}.mlp.fc2.bias": (dim,),
        }
    return out


def _llama(layers: int, dim: int, ffn: int, vocab: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {f"{LLM}.model.embed_tokens.weight": (vocab, dim)}
    for i in range(layers):
        b = f"{LLM}.model.layers.{i}"
        out |= {f"{b}.self_attn.{p}_proj.weight": (dim, dim) for p in "qkvo"}
        out |= {
            f"{b}.mlp.gate_proj.weight": (ffn, dim),
            f"{b}.mlp.up_proj.weight": (ffn, dim),
            f"{b}.mlp.down_proj.weight": (dim, ffn),
            f"{b}.input_layernorm.weight": (dim,),
            f"{b}.post_attention_layernorm.weight": (dim,),
        }
    out |= {f"{LLM}.model.norm.weight": (dim,), f"{LLM}.lm_head.weight": (vocab, dim)}
    return out


def openvla_7b_layout() -> dict[str, tuple[int, ...]]:
    """Names and shapes of every tensor in the ``openvla/openvla-7b`` safetensors shards."""
    patches = (224 // 14) ** 2
    vision_dim = 1024 + 1152
    layout = _vit(DINO, depth=24, dim=1024, mlp=4096, patches=patches, dino=True)
    layout |= _vit(SIGLIP, depth=27, dim=1152, mlp=4304, patches=patches, dino=False)
    layout |= {
        "projector.fc1.weight": (4 * vision_dim, vision_dim),
        "projector.fc1.bias": (4 * vision_dim,),
        "projector.fc2.weight": (4096, 4 * vision_dim),
        "projector.fc2.bias": (4096,),
        "projector.fc3.weight": (4096, 4096),
        "projector.fc3.bias": (4096,),
    }
    layout |= _llama(layers=32, dim=4096, ffn=11008, vocab=32064)
    return layout


def is_unused_key(key: str, dino_depth: int, siglip_depth: int) -> bool:
    """True for checkpoint tensors that cannot affect the features (second-to-last-block readout)."""
    for prefix, depth in ((DINO, dino_depth), (SIGLIP, siglip_depth)):
        if not key.startswith(prefix + "."):
            continue
        rest = key[len(prefix) + 1 :]
        return bool(re.match(rf"(blocks\.{depth - 1}\.|norm\.|attn_pool\.)", rest))
    return False


def unused_keys(layout: dict[str, tuple[int, ...]]) -> set[str]:
    """The unused tensors of a layout, depths read off its block indices."""
    depths = {}
    for prefix in (DINO, SIGLIP):
        idx = [
            int(m.group(1)) for k in layout if (m := re.match(rf"{re.escape(prefix)}\.blocks\.(\d+)\.", k))
        ]
        depths[prefix] = max(idx) + 1 if idx else 0
    return {k for k in layout if is_unused_key(k, depths[DINO], depths[SIGLIP])}
