"""Load (and write) OpenVLA HF checkpoints directly with safetensors: no ``trust_remote_code`` ever.

Public API:
- ``from_openvla(path, config_overrides=None, dtype=None, device="cpu") -> OpenVLACheckpoint``
  (a NamedTuple ``(model, tokenizer, config, raw_config)``). Reads ``config.json`` (the OpenVLAConfig
  fields), the safetensors shards via ``model.safetensors.index.json`` (or one ``model.safetensors``) and
  the tokenizer files. Builds the model on the meta device and assigns the checkpoint tensors, so the
  7B model never holds a second random copy. ``config_overrides`` is merged into the ``BackboneConfig``
  read from config.json (e.g. ``vision_mode``, ``lora``); LoRA adapters the config asks
  for are added after the base weights are loaded.
- ``save_openvla_layout(model, tokenizer, path, max_shard_size="7GB", norm_stats=None) -> list[Path]``:
  writes the real layout (config.json with the OpenVLAConfig fields, ``model-0000X-of-0000N.safetensors``
  + ``model.safetensors.index.json``, generation/preprocessor configs, tokenizer files); tests use it to
  make tiny checkpoints. Resized ViTs add one field, ``timm_model_kwargs`` (timm size overrides per id),
  so tiny checkpoints describe themselves; the real checkpoint has no such field (= the stock sizes).
- ``write_tiny_checkpoint(path, preset="tiny", seed=0)`` / ``python -m vla_dipole.model.openvla_checkpoint
  --out DIR [--preset tiny|small]``: a random-init backbone + in-process tokenizer in that layout.
- ``checkpoint_to_model_key`` / ``model_to_checkpoint_key``: the name mapping (DINOv2 LayerScale
  ``ls{1,2}.scale_factor`` <-> timm ``ls{1,2}.gamma``; everything else is already named alike).
- ``CheckpointMismatchError``: missing / unexpected / wrongly shaped tensors, listed.

Skipped tensors are explicit: ``SKIP_PATTERNS`` (RoPE caches written by old transformers versions) and,
when the config prunes them, the unused vision tensors of ``openvla_layout.is_unused_key``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from vla_dipole.model.backbone import PrismaticBackbone, apply_trainability
from vla_dipole.model.backbone_config import (
    DINO_MEAN,
    DINO_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    BackboneConfig,
    LlamaSettings,
    VisionBranchConfig,
)
from vla_dipole.model.lora import apply_lora
from vla_dipole.model.openvla_layout import is_unused_key

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
SKIP_PATTERNS: tuple[str, ...] = (r"\.rotary_emb\.inv_freq$", r"\.rotary_emb\.original_inv_freq$")
FUSED_ARCH = "fused-gelu-mlp"
# Our one extension of config.json, written only for resized (e.g. tiny) ViTs: timm size overrides per id.
TIMM_KWARGS_FIELD = "timm_model_kwargs"
# Per-branch defaults for the real timm ids (normalisation from OpenVLA's preprocessor_config.json).
_BRANCH_STATS = {"dinov2": (DINO_MEAN, DINO_STD), "siglip": (SIGLIP_MEAN, SIGLIP_STD)}


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's tensors do not match the model built from its config."""


class OpenVLACheckpoint(NamedTuple):
    model: PrismaticBackbone
    tokenizer: Any
    config: BackboneConfig
    raw_config: dict[str, Any]  # config.json as read (norm_stats, n_action_bins, ...)


# ---- key mapping ---------------------------------------------------------------------------------------
def checkpoint_to_model_key(key: str) -> str:
    return re.sub(r"\.ls([12])\.scale_factor$", r".ls\1.gamma", key)


def model_to_checkpoint_key(key: str) -> str:
    return re.sub(r"\.ls([12])\.gamma$", r".ls\1.scale_factor", key)


# ---- config.json ---------------------------------------------------------------------------------------
def _require(cfg: dict[str, Any], field: str, file: Path) -> Any:
    if field not in cfg:
        raise ValueError(f"{file}: missing field {field!r} (an OpenVLAConfig config.json has it)")
    return cfg[field]


def config_from_openvla_json(raw: dict[str, Any], file: Path) -> BackboneConfig:
    """Map the OpenVLAConfig fields onto a ``BackboneConfig`` (text_config unset fields = LlamaConfig defaults)."""
    from transformers import LlamaConfig

    if not _require(raw, "use_fused_vision_backbone", file):
        raise ValueError(
            f"{file}: field 'use_fused_vision_backbone' is false; only fused DINOv2+SigLIP is supported"
        )
    arch = _require(raw, "arch_specifier", file)
    if not str(arch).endswith(FUSED_ARCH):
        raise ValueError(f"{file}: field 'arch_specifier' = {arch!r}; expected one ending in {FUSED_ARCH!r}")
    ids = _require(raw, "timm_model_ids", file)
    sizes = _require(raw, "image_sizes", file)
    if len(ids) != 2 or len(sizes) != 2 or sizes[0] != sizes[1]:
        raise ValueError(
            f"{file}: fields 'timm_model_ids'/'image_sizes' must list 2 ViTs with one image size"
        )
    kwargs = raw.get(TIMM_KWARGS_FIELD) or [{}, {}]
    if len(kwargs) != 2 or not all(isinstance(k, dict) for k in kwargs):
        raise ValueError(f"{file}: field {TIMM_KWARGS_FIELD!r} must list 2 mappings (one per timm id)")
    branches = []
    for tid, overrides in zip(ids, kwargs, strict=True):
        kind = "dinov2" if "dinov2" in tid else "siglip" if "siglip" in tid else None
        if kind is None:
            raise ValueError(
                f"{file}: field 'timm_model_ids' has {tid!r}; expected a DINOv2 and a SigLIP timm id"
            )
        branches.append(VisionBranchConfig(tid, dict(overrides), *_BRANCH_STATS[kind]))
    text = dict(_require(raw, "text_config", file))
    text.pop("model_type", None)
    llama = LlamaConfig(**text)
    rope = getattr(llama, "rope_parameters", None) or {}
    llm = LlamaSettings(
        hidden_size=llama.hidden_size,
        intermediate_size=llama.intermediate_size,
        num_hidden_layers=llama.num_hidden_layers,
        num_attention_heads=llama.num_attention_heads,
        num_key_value_heads=llama.num_key_value_heads,
        vocab_size=llama.vocab_size,
        max_position_embeddings=llama.max_position_embeddings,
        rms_norm_eps=llama.rms_norm_eps,
        rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 10000.0))),
        bos_token_id=llama.bos_token_id,
        eos_token_id=llama.eos_token_id,
        pad_token_id=raw.get("pad_token_id", llama.pad_token_id),
    )
    return BackboneConfig(
        featurizer=branches[0],
        fused_featurizer=branches[1],
        image_size=int(sizes[0]),
        llm=llm,
        max_length=int(raw.get("llm_max_length", 2048)),
    )


# ---- loading -------------------------------------------------------------------------------------------
def _shard_files(path: Path) -> list[Path]:
    index = path / INDEX_FILE
    if index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(
                f"{index}: field 'weight_map' must be a non-empty mapping of tensor name -> shard file"
            )
        files = sorted({path / f for f in weight_map.values()})
        for f in files:
            if not f.exists():
                raise FileNotFoundError(f"{index}: weight_map names shard {f.name}, which does not exist")
        return files
    if (path / SINGLE_FILE).exists():
        return [path / SINGLE_FILE]
    raise FileNotFoundError(f"{path}: neither {INDEX_FILE} nor {SINGLE_FILE} found")


def _skipped(key: str, config: BackboneConfig, depths: tuple[int, int]) -> bool:
    if any(re.search(p, key) for p in SKIP_PATTERNS):
        return True
    return config.prune_unused_vision and is_unused_key(key, *depths)


def _read_state_dict(
    files: list[Path], model: PrismaticBackbone, dtype: torch.dtype | None, device: str
) -> dict[str, torch.Tensor]:
    """Read every shard, map names, and fail with the full list of missing / unexpected / misshapen tensors."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    vb = model.vision_backbone
    depths = (vb.take_index["featurizer"] + 2, vb.take_index["fused_featurizer"] + 2)
    state: dict[str, torch.Tensor] = {}
    unexpected, misshapen, seen = [], [], set()
    for file in tqdm(files, desc="loading OpenVLA shards", disable=len(files) < 2):
        with safe_open(str(file), framework="pt", device=device) as f:
            for ckpt_key in f.keys():
                key = checkpoint_to_model_key(ckpt_key)
                if key not in expected:
                    if not _skipped(ckpt_key, model.config, depths):
                        unexpected.append(f"{ckpt_key} ({file.name})")
                    continue
                seen.add(key)
                tensor = f.get_tensor(ckpt_key)
                if tuple(tensor.shape) != expected[key]:
                    misshapen.append(f"{ckpt_key}: checkpoint {tuple(tensor.shape)} vs model {expected[key]}")
                    continue
                state[key] = tensor if dtype is None else tensor.to(dtype)
    missing = sorted(set(expected) - seen)
    if missing or unexpected or misshapen:
        parts = [
            f"{name} ({len(keys)}): {keys[:50]}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
            if keys
        ]
        raise CheckpointMismatchError(
            f"{files[0].parent}: checkpoint does not match the model; " + "; ".join(parts)
        )
    return state


def _rebuild_meta_buffers(model: PrismaticBackbone, device: str) -> None:
    """Non-persistent buffers (Llama RoPE inverse frequencies) are not in checkpoints: recompute them."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    for name, module in model.named_modules():
        if not any(b.is_meta for b in module.buffers(recurse=False)):
            continue
        if not isinstance(module, LlamaRotaryEmbedding):
            raise CheckpointMismatchError(
                f"buffer of {name} ({type(module).__name__}) is not in the checkpoint"
            )
        with torch.device(device):
            fresh = LlamaRotaryEmbedding(config=module.config)
        for buf_name, buf in fresh.named_buffers(recurse=False):
            setattr(module, buf_name, buf)


def load_tokenizer(path: str | Path, pad_token_id: int | None = None):
    """The checkpoint's HF tokenizer, never with remote code; checks ``<PAD>`` has the config's id.

    ``tokenizer.json`` is loaded directly (no config.json look-up, whose auto_map names remote code).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (Path(path) / "tokenizer.json").exists():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    if pad_token_id is not None and tokenizer.pad_token_id != pad_token_id:
        raise ValueError(
            f"{path}: tokenizer pad token id is {tokenizer.pad_token_id}, but config.json 'pad_token_id' is {pad_token_id}"
        )
    return tokenizer


def from_openvla(
    path: str | Path,
    config_overrides: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    load_tokenizer_files: bool = True,
) -> OpenVLACheckpoint:
    """Build a ``PrismaticBackbone`` from a local OpenVLA HF directory and load its weights."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(
            f"{config_file}: not found (expected a local OpenVLA HF checkpoint directory)"
        )
    raw = json.loads(config_file.read_text())
    config = config_from_openvla_json(raw, config_file)
    if config_overrides:
        config = config.replace(**config_overrides)
    with torch.device("meta"):
        model = PrismaticBackbone(config, apply_adapters=False)
    state = _read_state_dict(_shard_files(path), model, dtype, device)
    model.load_state_dict(state, strict=True, assign=True)
    _rebuild_meta_buffers(model, device)
    apply_lora(model)
    apply_trainability(model)
    tokenizer = load_tokenizer(path, config.llm.pad_token_id) if load_tokenizer_files else None
    return OpenVLACheckpoint(model, tokenizer, config, raw)


# ---- saving (tiny test checkpoints in the real layout) ---------------------------------------------------
def _text_config(llm: LlamaSettings, dtype: str) -> dict[str, Any]:
    """Only what differs from LlamaConfig defaults, like the real checkpoint's text_config."""
    defaults = LlamaSettings(vocab_size=32000, pad_token_id=-1)
    out: dict[str, Any] = {"model_type": "llama", "torch_dtype": dtype}
    for field, value in vars(llm).items():
        if value != getattr(defaults, field):
            out[field] = value
    return dict(sorted(out.items()))


def openvla_config_json(config: BackboneConfig, dtype: str, norm_stats: dict | None = None) -> dict[str, Any]:
    """The OpenVLAConfig fields (OpenVLA's config.json) for a model of this config."""
    size = config.image_size
    out = {
        "architectures": ["OpenVLAForActionPrediction"],
        "arch_specifier": "no-align+fused-gelu-mlp",
        # The real repository ships remote code; we never run it, but keep the field for layout fidelity.
        "auto_map": {
            "AutoConfig": "configuration_prismatic.OpenVLAConfig",
            "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction",
        },
        "image_resize_strategy": "resize-naive",
        "image_sizes": [size, size],
        "llm_backbone_id": "llama2-7b-pure",
        "llm_max_length": config.max_length,
        "model_type": "openvla",
        "n_action_bins": 256,
        "norm_stats": norm_stats or {},
        "output_projector_states": False,
        "pad_to_multiple_of": 64,
        "pad_token_id": config.llm.pad_token_id,
        "text_config": _text_config(config.llm, dtype),
        "timm_model_ids": [config.featurizer.timm_model, config.fused_featurizer.timm_model],
        "timm_override_act_layers": [None, None],
        "torch_dtype": dtype,
        "transformers_version": "4.40.1",
        "use_fused_vision_backbone": True,
        "vision_backbone_id": "dinosiglip-vit-so-224px",
    }
    overrides = [dict(config.featurizer.overrides), dict(config.fused_featurizer.overrides)]
    if any(overrides):
        out[TIMM_KWARGS_FIELD] = overrides
    return out


def save_openvla_layout(
    model: PrismaticBackbone,
    tokenizer,
    path: str | Path,
    max_shard_size: int | str = "7GB",
    norm_stats: dict | None = None,
) -> list[Path]:
    """Write ``model`` + ``tokenizer`` exactly as the openvla/openvla-7b HF repository lays them out."""
    from huggingface_hub import split_torch_state_dict_into_shards

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {
        model_to_checkpoint_key(k): v.detach().contiguous().clone() for k, v in model.state_dict().items()
    }
    if any("lora_" in k or ".base_layer." in k for k in state):
        raise ValueError(
            "save_openvla_layout: the model holds LoRA layers; merge them first (lora.merge_lora)"
        )
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    files = []
    shards = list(split.filename_to_tensors.items())
    for i, (_, names) in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: state[n] for n in names}, str(path / name), metadata={"format": "pt"})
        files.append(path / name)
    weight_map = {n: files[i].name for i, (_, names) in enumerate(shards) for n in names}
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (path / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    cfg = model.config
    (path / "config.json").write_text(
        json.dumps(openvla_config_json(cfg, dtype, norm_stats), indent=2) + "\n"
    )
    llm = cfg.llm
    generation = {
        "bos_token_id": llm.bos_token_id,
        "eos_token_id": llm.eos_token_id,
        "pad_token_id": llm.pad_token_id,
        "transformers_version": "4.40.1",
    }
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    preprocessor = {
        "image_resize_strategy": "resize-naive",
        "input_sizes": [[3, cfg.image_size, cfg.image_size]] * 2,
        "interpolations": ["bicubic", "bicubic"],
        "means": [list(cfg.featurizer.mean), list(cfg.fused_featurizer.mean)],
        "stds": [list(cfg.featurizer.std), list(cfg.fused_featurizer.std)],
        "tvf_resize_params": [{"size": cfg.image_size}] * 2,
        "use_fused_vision_backbone": True,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
        added = {t: tokenizer.convert_tokens_to_ids(t) for t in [tokenizer.pad_token] if t is not None}
        (path / "added_tokens.json").write_text(json.dumps(added, indent=2) + "\n")
    return files


def write_tiny_checkpoint(
    path: str | Path, preset: str = "tiny", seed: int = 0, max_shard_size: str = "400KB"
):
    """A randomly initialised backbone + in-process tokenizer saved in the real layout (demos, tests)."""
    from vla_dipole.model.prompt import build_tiny_tokenizer

    torch.manual_seed(seed)
    config = BackboneConfig.preset(preset)
    model = PrismaticBackbone(config, apply_adapters=False)
    tokenizer = build_tiny_tokenizer(config.llm.pad_token_id)
    save_openvla_layout(model, tokenizer, path, max_shard_size=max_shard_size)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write a randomly initialised OpenVLA-layout checkpoint.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shard-size", default="400KB")
    args = parser.parse_args(argv)
    out = write_tiny_checkpoint(args.out, args.preset, args.seed, args.max_shard_size)
    print(f"wrote {args.preset} OpenVLA-layout checkpoint to {out}")


if __name__ == "__main__":
    main()
