"""Configuration of the Prismatic/OpenVLA backbone (vision featurizers, projector, Llama, fine-tuning).

Public API:
- ``VisionBranchConfig``: one timm ViT (model name + keyword overrides, normalisation stats).
- ``LlamaSettings``: the ``LlamaConfig`` fields we set (defaults = the OpenVLA-7B text_config).
- ``LoraSettings``: peft LoRA settings (OpenVLA fine-tuning defaults: r=32, alpha=16, all-linear).
- ``BackboneConfig``: everything above plus freeze flags, gradient checkpointing and bf16 autocast;
  ``BackboneConfig.preset(name)`` for ``"tiny"`` (tests), ``"small"`` (CPU bench) and ``"openvla-7b"``;
  ``BackboneConfig.from_dict(d)`` / ``to_dict()`` for YAML presets.

Tiny presets keep the *same module structure* as the real model (timm ``VisionTransformer`` with
4 registers and LayerScale for the DINO branch; no class token and a MAP ``attn_pool`` for the SigLIP
branch) by overriding only the sizes of the real timm architectures, so checkpoint key names match.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

DINO_MEAN = (0.485, 0.456, 0.406)
DINO_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

DINO_TIMM_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_TIMM_ID = "vit_so400m_patch14_siglip_224"


@dataclass
class VisionBranchConfig:
    """One vision featurizer: a timm model id plus size overrides (``embed_dim``, ``depth``, ...)."""

    timm_model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = DINO_MEAN
    std: tuple[float, float, float] = DINO_STD


@dataclass
class LlamaSettings:
    """The ``transformers.LlamaConfig`` fields of the language model (defaults: Llama-2-7B as in OpenVLA)."""

    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    vocab_size: int = 32064
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 32000

    def to_llama_config(self, attn_implementation: str | None = None):
        """Build the ``LlamaConfig`` (imported lazily: transformers is slow to import)."""
        from transformers import LlamaConfig

        kwargs = dataclasses.asdict(self)
        rope_theta = kwargs.pop("rope_theta")
        cfg = LlamaConfig(
            **kwargs,
            rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
            tie_word_embeddings=False,
            hidden_act="silu",
        )
        if attn_implementation is not None:
            cfg._attn_implementation = resolve_attn_implementation(attn_implementation)
        return cfg


@dataclass
class LoraSettings:
    """peft LoRA settings; the defaults are OpenVLA's official LoRA fine-tuning recipe."""

    enabled: bool = False
    r: int = 32
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    init: str | bool = "gaussian"
    # Named adapters on the LLM; more than one enables the branch-specific option (peft multi-adapter).
    adapters: tuple[str, ...] = ("default",)
    # timm ViT linear layers LoRA'd when ``BackboneConfig.vision_mode == "lora"``.
    vision_target_modules: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")


VisionMode = Literal["frozen", "lora", "full"]


@dataclass
class BackboneConfig:
    """Everything needed to build a ``PrismaticBackbone``."""

    featurizer: VisionBranchConfig = field(
        default_factory=lambda: VisionBranchConfig(DINO_TIMM_ID, {}, DINO_MEAN, DINO_STD)
    )
    fused_featurizer: VisionBranchConfig = field(
        default_factory=lambda: VisionBranchConfig(SIGLIP_TIMM_ID, {}, SIGLIP_MEAN, SIGLIP_STD)
    )
    image_size: int = 224
    # Projector: fc1 widens to ``projector_ratio * vision_dim`` (fused GELU MLP: 4x).
    projector_ratio: int = 4
    llm: LlamaSettings = field(default_factory=LlamaSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    vision_mode: VisionMode = "frozen"
    freeze_projector: bool = False
    # Full LLM training when LoRA is off and this is False.
    freeze_llm: bool = False
    gradient_checkpointing: bool = False
    bf16_autocast: bool = True  # only takes effect on CUDA inputs
    # "sdpa", "eager", "flash_attention_2", or "auto" (flash-attn when installed and CUDA is up, else sdpa).
    attn_implementation: str = "sdpa"
    # Drop the vision tensors that never affect the output (last block, final norm, SigLIP attn_pool);
    # ``from_openvla`` then skips them explicitly. Keep False to hold the exact checkpoint layout.
    prune_unused_vision: bool = False
    max_length: int = 2048

    # ---- presets -------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> BackboneConfig:
        """``"tiny"`` (tests, ~0.4 M params), ``"small"`` (CPU-sized), ``"openvla-7b"`` (the real sizes)."""
        if name == "openvla-7b":
            return cls()
        if name == "tiny":
            return cls(
                featurizer=_branch(DINO_TIMM_ID, 32, 3, 2, DINO_MEAN, DINO_STD),
                fused_featurizer=_branch(SIGLIP_TIMM_ID, 48, 3, 2, SIGLIP_MEAN, SIGLIP_STD),
                image_size=56,
                llm=LlamaSettings(
                    hidden_size=64,
                    intermediate_size=128,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    num_key_value_heads=4,
                    vocab_size=320,
                    max_position_embeddings=512,
                    pad_token_id=256,
                ),
                max_length=512,
            )
        if name == "small":
            return cls(
                featurizer=_branch(DINO_TIMM_ID, 192, 6, 3, DINO_MEAN, DINO_STD),
                fused_featurizer=_branch(SIGLIP_TIMM_ID, 192, 6, 3, SIGLIP_MEAN, SIGLIP_STD),
                image_size=112,
                llm=LlamaSettings(
                    hidden_size=512,
                    intermediate_size=1376,
                    num_hidden_layers=6,
                    num_attention_heads=8,
                    num_key_value_heads=8,
                    vocab_size=320,  # the tiny tokenizer's vocabulary, like "tiny"
                    pad_token_id=256,
                ),
            )
        raise ValueError(f"unknown backbone preset {name!r}; expected one of 'tiny', 'small', 'openvla-7b'")

    # ---- derived sizes ---------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.llm.hidden_size

    # ---- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> BackboneConfig:
        """Build from a (possibly partial, possibly OmegaConf) mapping; unknown keys raise."""
        d = dict(d or {})
        if "preset" in d:
            base = cls.preset(d.pop("preset")).to_dict()
            d = _deep_merge(base, d)
        return _from_dict(cls, d, "BackboneConfig")

    def replace(self, **overrides: Any) -> BackboneConfig:
        """A copy with nested overrides, e.g. ``replace(llm={"num_hidden_layers": 2})``."""
        return _from_dict(BackboneConfig, _deep_merge(self.to_dict(), overrides), "BackboneConfig")


def resolve_attn_implementation(name: str) -> str:
    """Map ``"auto"`` to ``flash_attention_2`` when flash-attn and a GPU are available, else ``sdpa``."""
    if name != "auto":
        return name
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _branch(model: str, dim: int, depth: int, heads: int, mean, std) -> VisionBranchConfig:
    return VisionBranchConfig(model, {"embed_dim": dim, "depth": depth, "num_heads": heads}, mean, std)


def _deep_merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "overrides":
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _from_dict(cls, d: Any, where: str):
    if dataclasses.is_dataclass(d):
        return d
    if not hasattr(d, "items"):
        raise TypeError(f"{where}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    nested = {"featurizer": VisionBranchConfig, "fused_featurizer": VisionBranchConfig}
    nested.update({"llm": LlamaSettings, "lora": LoraSettings})
    for k, v in d.items():
        if cls is BackboneConfig and k in nested:
            v = _from_dict(nested[k], v, f"{where}.{k}")
        elif isinstance(v, list) and k in ("mean", "std", "adapters", "vision_target_modules"):
            v = tuple(v)
        elif k == "overrides":
            v = dict(v)
        kwargs[k] = v
    return cls(**kwargs)
