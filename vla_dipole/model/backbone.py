"""Prismatic/OpenVLA backbone: fused DINOv2 + SigLIP timm ViTs -> GELU MLP projector -> HF Llama.

Public API:
- ``PrismaticBackbone(config: BackboneConfig)`` with submodules named exactly as the OpenVLA checkpoint
  (``vision_backbone.featurizer``, ``vision_backbone.fused_featurizer``, ``projector.fc1/fc2/fc3``,
  ``language_model`` = ``LlamaForCausalLM``), so its ``state_dict`` maps 1:1 onto the checkpoint keys
  (up to timm's ``ls*.gamma`` <-> checkpoint ``ls*.scale_factor``, see ``openvla_checkpoint``).
- ``forward(pixel_values [B, n_images, 6, H, W], input_ids [B, L], attention_mask [B, L],
  suffix_embeds=None, return_logits=False) -> BackboneOutput(hidden [B, T, D], mask [B, T], logits)``:
  image i's patches are spliced after BOS in order, so T = L + n_images * num_patches (+ K suffix
  tokens). ``hidden`` is the last decoder layer output after the final RMSNorm (OpenVLA's
  ``hidden_states[-1]``); the visual tokens sit at positions 1 .. n_images * num_patches.
- ``lm_logits(pixel_values, input_ids, attention_mask) -> [B, T, vocab]`` (checkpoint round trips).
- ``hidden_size``, ``num_patches`` (per image), ``embed_images(pixel_values) -> [B, n*P, D]``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import timm
import torch
from torch import nn

from vla_dipole.model.backbone_config import BackboneConfig, VisionBranchConfig


@dataclass
class BackboneOutput:
    hidden: torch.Tensor  # [B, T, D] final (normed) LLM hidden states
    mask: torch.Tensor  # [B, T] 1 = real token (text, patch or suffix), 0 = padding
    logits: torch.Tensor | None = None  # [B, T, vocab] when requested


def build_featurizer(branch: VisionBranchConfig, image_size: int) -> nn.Module:
    """A timm ViT with no classifier, built without downloading weights."""
    return timm.create_model(
        branch.timm_model, pretrained=False, img_size=image_size, num_classes=0, **branch.overrides
    )


def prune_unused_blocks(vit: nn.Module) -> None:
    """Remove the parts that never reach the second-to-last-block features (last block, norm, attn_pool)."""
    vit.blocks = vit.blocks[:-1]
    vit.norm = nn.Identity()
    if getattr(vit, "attn_pool", None) is not None:
        vit.attn_pool = None


class PrismaticVisionBackbone(nn.Module):
    """Fused featurizer: DINO channels 0:3 and SigLIP channels 3:6, second-to-last block, no final norm."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.featurizer = build_featurizer(config.featurizer, config.image_size)
        self.fused_featurizer = build_featurizer(config.fused_featurizer, config.image_size)
        # Index of the block whose output we take, fixed at build time so pruning does not shift it.
        self.take_index = {
            "featurizer": len(self.featurizer.blocks) - 2,
            "fused_featurizer": len(self.fused_featurizer.blocks) - 2,
        }
        if config.prune_unused_vision:
            prune_unused_blocks(self.featurizer)
            prune_unused_blocks(self.fused_featurizer)
        grid = self.featurizer.patch_embed.grid_size
        self.num_patches = grid[0] * grid[1]
        fused_grid = self.fused_featurizer.patch_embed.grid_size
        if fused_grid[0] * fused_grid[1] != self.num_patches:
            raise ValueError(f"featurizers disagree on patch count: {grid} vs {fused_grid}")
        self.embed_dim = self.featurizer.embed_dim + self.fused_featurizer.embed_dim

    def _features(self, name: str, x: torch.Tensor) -> torch.Tensor:
        vit = getattr(self, name)
        (feats,) = vit.forward_intermediates(
            x,
            indices=[self.take_index[name]],
            norm=False,
            stop_early=True,
            output_fmt="NLC",
            intermediates_only=True,
        )
        return feats  # prefix tokens already stripped by timm

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 6, H, W] -> [N, num_patches, dino_dim + siglip_dim]."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 6:
            raise ValueError(f"pixel_values: expected [N, 6, H, W], got {tuple(pixel_values.shape)}")
        dino, siglip = torch.split(pixel_values, [3, 3], dim=1)
        return torch.cat(
            [self._features("featurizer", dino), self._features("fused_featurizer", siglip)], dim=2
        )


class PrismaticProjector(nn.Module):
    """Fused GELU MLP: vision_dim -> ratio * vision_dim -> llm_dim -> llm_dim."""

    def __init__(self, vision_dim: int, llm_dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, ratio * vision_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(ratio * vision_dim, llm_dim)
        self.act_fn2 = nn.GELU()
        self.fc3 = nn.Linear(llm_dim, llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act_fn2(self.fc2(self.act_fn1(self.fc1(x)))))


class PrismaticBackbone(nn.Module):
    """OpenVLA's VLM trunk returning final hidden states for a continuous action head."""

    def __init__(self, config: BackboneConfig, apply_adapters: bool = True) -> None:
        """``apply_adapters=False`` builds the bare checkpoint layout (``from_openvla`` adds LoRA after loading)."""
        super().__init__()
        from transformers import LlamaForCausalLM

        from vla_dipole.model.lora import apply_lora

        self.config = config
        self.vision_backbone = PrismaticVisionBackbone(config)
        self.projector = PrismaticProjector(
            self.vision_backbone.embed_dim, config.llm.hidden_size, config.projector_ratio
        )
        llama_config = config.llm.to_llama_config(attn_implementation=config.attn_implementation)
        self.language_model = LlamaForCausalLM(llama_config)
        if apply_adapters:
            apply_lora(self)
        apply_trainability(self)

    # ---- sizes -------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.config.llm.hidden_size

    @property
    def num_patches(self) -> int:
        return self.vision_backbone.num_patches

    # ---- forward -----------------------------------------------------------------------------------
    def _autocast(self, device: torch.device):
        if self.config.bf16_autocast and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, n, 6, H, W] -> projected patch embeddings [B, n * num_patches, D] (image order kept)."""
        if pixel_values.ndim == 4:
            pixel_values = pixel_values[:, None]
        if pixel_values.ndim != 5 or pixel_values.shape[2] != 6:
            raise ValueError(
                f"pixel_values: expected [B, n_images, 6, H, W], got {tuple(pixel_values.shape)}"
            )
        b, n = pixel_values.shape[:2]
        dtype = self.projector.fc1.weight.dtype
        feats = self.vision_backbone(pixel_values.flatten(0, 1).to(dtype))
        return self.projector(feats).reshape(b, n * feats.shape[1], -1)

    def _splice(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        suffix_embeds: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids / attention_mask: expected matching [B, L], got {tuple(input_ids.shape)} "
                f"and {tuple(attention_mask.shape)}"
            )
        patches = self.embed_images(pixel_values)
        text = self.language_model.get_input_embeddings()(input_ids)
        patches = patches.to(text.dtype)
        parts = [text[:, :1], patches, text[:, 1:]]
        masks = [attention_mask[:, :1], attention_mask.new_ones(patches.shape[:2]), attention_mask[:, 1:]]
        if suffix_embeds is not None:
            parts.append(suffix_embeds.to(text.dtype))
            masks.append(attention_mask.new_ones(suffix_embeds.shape[:2]))
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        suffix_embeds: torch.Tensor | None = None,
        return_logits: bool = False,
    ) -> BackboneOutput:
        """Splice image patches after BOS, run the LLM on ``inputs_embeds`` and return final hidden states.

        ``suffix_embeds`` [B, K, D] (e.g. action queries / a proprio token) are appended after the
        (right-padded) text and always attended.
        """
        with self._autocast(input_ids.device):
            embeds, mask = self._splice(pixel_values, input_ids, attention_mask, suffix_embeds)
            decoder = self.language_model.get_decoder()
            hidden = decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
            logits = self.language_model.get_output_embeddings()(hidden) if return_logits else None
        return BackboneOutput(hidden=hidden, mask=mask, logits=logits)

    def lm_logits(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Full-vocabulary LM logits [B, L + n*P, vocab] (what OpenVLA's forward returns)."""
        return self.forward(pixel_values, input_ids, attention_mask, return_logits=True).logits

    # ---- fine-tuning switches ------------------------------------------------------------------------
    def enable_gradient_checkpointing(self) -> None:
        """Checkpoint every ViT block and Llama layer (non-reentrant)."""
        self.vision_backbone.featurizer.set_grad_checkpointing(True)
        self.vision_backbone.fused_featurizer.set_grad_checkpointing(True)
        self.language_model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )


def apply_trainability(model: PrismaticBackbone) -> None:
    """Set ``requires_grad`` from the config and switch on gradient checkpointing.

    Vision: ``full`` trains the ViTs, ``lora`` only their adapters, ``frozen`` nothing. LLM: only the
    adapters when LoRA is on, nothing with ``freeze_llm``, everything otherwise. Tensors that never reach
    the output (the ViTs' last block, final norm and attn_pool) are always frozen, so distributed
    training sees no unused trainable parameters.
    """
    cfg = model.config
    vb = model.vision_backbone
    for name, p in vb.named_parameters():
        p.requires_grad_(cfg.vision_mode == "full" or (cfg.vision_mode == "lora" and "lora_" in name))
    for name in ("featurizer", "fused_featurizer"):
        vit = getattr(vb, name)
        for i, blk in enumerate(vit.blocks):
            if i > vb.take_index[name]:
                blk.requires_grad_(False)
        vit.norm.requires_grad_(False)
        if getattr(vit, "attn_pool", None) is not None:
            vit.attn_pool.requires_grad_(False)
    model.projector.requires_grad_(not cfg.freeze_projector)
    for name, p in model.language_model.named_parameters():
        p.requires_grad_("lora_" in name if cfg.lora.enabled else not cfg.freeze_llm)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
