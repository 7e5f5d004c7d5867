"""peft LoRA for the backbone: the LLM (OpenVLA recipe r=32, alpha=16, all-linear) and optionally the ViTs.

Public API:
- ``apply_lora(model) -> model``: from ``model.config.lora`` / ``model.config.vision_mode``. The LLM becomes a
  ``peft.PeftModel`` holding one adapter per name in ``lora.adapters`` (several names = the branch-specific
  option: e.g. ``("pos", "neg")`` gives pi+ and pi- their own LLM adapters). With ``vision_mode == "lora"``
  the timm ViTs get adapters injected in place (``peft.inject_adapter_in_model``) on ``vision_target_modules``.
  ``PrismaticBackbone(config)`` calls it; ``from_openvla`` calls it after loading the base weights.
- ``set_active_adapter(model, name)``: route the next forward through adapter ``name`` while keeping every
  adapter trainable (peft's own ``set_adapter`` freezes the inactive ones, which would silently drop the
  other branch's gradients within one step).
- ``copy_adapter(model, src, dst)``: copy one LLM adapter's weights onto another (pi- starts as pi+).
- ``active_adapter(model) -> str | None``, ``has_lora(model) -> bool``.
- ``merge_lora(model) -> model``: fold the (active) LLM and ViT adapters into the base weights and restore
  the plain module layout (needed before ``save_openvla_layout``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from vla_dipole.model.backbone import PrismaticBackbone

LORA_MARK = "lora_"


def _lora_config(model: PrismaticBackbone, target_modules):
    from peft import LoraConfig

    s = model.config.lora
    return LoraConfig(
        r=s.r,
        lora_alpha=s.alpha,
        lora_dropout=s.dropout,
        target_modules=target_modules,
        init_lora_weights=s.init,
        bias="none",
    )


def has_lora(model: nn.Module) -> bool:
    return any(LORA_MARK in name for name, _ in model.named_parameters())


def apply_lora(model: PrismaticBackbone) -> PrismaticBackbone:
    """Add LoRA adapters as the config asks (no-op when neither LLM nor vision LoRA is enabled)."""
    from peft import PeftModel, get_peft_model, inject_adapter_in_model

    cfg = model.config
    if cfg.lora.enabled and not isinstance(model.language_model, PeftModel):
        if not cfg.lora.adapters:
            raise ValueError("lora.adapters: expected at least one adapter name")
        llm_cfg = _lora_config(model, cfg.lora.target_modules)
        first, *rest = cfg.lora.adapters
        peft_llm = get_peft_model(model.language_model, llm_cfg, adapter_name=first)
        for name in rest:
            peft_llm.add_adapter(name, llm_cfg)
        model.language_model = peft_llm
    if cfg.vision_mode == "lora" and not has_lora(model.vision_backbone):
        # Only the transformer blocks' linears (not patch_embed.proj / attn_pool.proj, which share names).
        names = "|".join(cfg.lora.vision_target_modules)
        vit_cfg = _lora_config(model, rf"blocks\.\d+\.(?:attn|mlp)\.(?:{names})")
        for vit in (model.vision_backbone.featurizer, model.vision_backbone.fused_featurizer):
            inject_adapter_in_model(vit_cfg, vit, adapter_name="default")
    return model


def _lora_layers(module: nn.Module):
    from peft.tuners.lora import LoraLayer

    return [m for m in module.modules() if isinstance(m, LoraLayer)]


def set_active_adapter(model: PrismaticBackbone, name: str) -> None:
    """Make the LLM's adapter ``name`` the one used by the next forward; all adapters stay trainable."""
    adapters = model.config.lora.adapters
    if name not in adapters:
        raise ValueError(f"unknown LoRA adapter {name!r}; the config defines {list(adapters)}")
    layers = _lora_layers(model.language_model)
    if not layers:
        raise ValueError("set_active_adapter: the language model has no LoRA layers (lora.enabled is false)")
    for layer in layers:
        layer.set_adapter(name)
    for pname, p in model.language_model.named_parameters():
        if LORA_MARK in pname:
            p.requires_grad_(True)


@torch.no_grad()
def copy_adapter(model: PrismaticBackbone, src: str, dst: str) -> int:
    """Overwrite the LLM's adapter ``dst`` with a copy of ``src`` (pi- starting as pi+); returns tensors copied."""
    copied = 0
    for layer in _lora_layers(model.language_model):
        for attr in layer.adapter_layer_names:
            store = getattr(layer, attr, None)
            if store is None or src not in store:
                continue
            if dst not in store:
                raise ValueError(f"copy_adapter: LoRA adapter {dst!r} missing next to {src!r} in {attr}")
            for d, s in zip(_tensors(store[dst]), _tensors(store[src]), strict=True):
                d.copy_(s)
                copied += 1
    return copied


def _tensors(entry) -> list[torch.Tensor]:
    return [entry] if isinstance(entry, torch.Tensor) else list(entry.parameters())


def active_adapter(model: PrismaticBackbone) -> str | None:
    layers = _lora_layers(model.language_model)
    return layers[0].active_adapters[0] if layers else None


def merge_lora(model: PrismaticBackbone) -> PrismaticBackbone:
    """Fold the active adapters into the base weights; the model gets back the checkpoint key layout."""
    from peft import PeftModel

    if isinstance(model.language_model, PeftModel):
        model.language_model = model.language_model.merge_and_unload()
    for vit_name in ("featurizer", "fused_featurizer"):
        vit = getattr(model.vision_backbone, vit_name)
        for parent in list(vit.modules()):
            for child_name, child in list(parent.named_children()):
                if hasattr(child, "merge") and hasattr(child, "get_base_layer"):
                    child.merge()
                    setattr(parent, child_name, child.get_base_layer())
    return model
