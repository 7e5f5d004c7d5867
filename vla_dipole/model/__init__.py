"""Model package: the Prismatic/OpenVLA backbone, its processors and the DIPOLE policy."""

from vla_dipole.model.backbone import BackboneOutput, PrismaticBackbone
from vla_dipole.model.backbone_config import BackboneConfig, LlamaSettings, LoraSettings, VisionBranchConfig
from vla_dipole.model.image_processing import PrismaticImageProcessor
from vla_dipole.model.prompt import build_prompt, build_tiny_tokenizer, driving_instruction, driving_prompt_ids

__all__ = [
    "BackboneConfig",
    "BackboneOutput",
    "LlamaSettings",
    "LoraSettings",
    "PrismaticBackbone",
    "PrismaticImageProcessor",
    "VisionBranchConfig",
    "build_prompt",
    "build_tiny_tokenizer",
    "driving_instruction",
    "driving_prompt_ids",
]
