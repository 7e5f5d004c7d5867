"""Model package: the Prismatic/OpenVLA backbone, its processors and the DIPOLE policy."""

from vla_dipole.model.backbone import BackboneOutput, PrismaticBackbone
from vla_dipole.model.backbone_config import BackboneConfig, LlamaSettings, LoraSettings, VisionBranchConfig
from vla_dipole.model.image_processing import PrismaticImageProcessor
from vla_dipole.model.prompt import (
    build_prompt,
    build_tiny_tokenizer,
    driving_instruction,
    driving_prompt_ids,
)

# The policy side imports diffusers (slow): loaded on first attribute access.
_LAZY = {
    "PolicyConfig": "vla_dipole.model.config",
    "DiffusionTrajectoryHead": "vla_dipole.model.head",
    "DrivingProcessor": "vla_dipole.model.processor",
    "PolicyInputs": "vla_dipole.model.processor",
    "TrajectoryNormalizer": "vla_dipole.model.processor",
    "Conditioning": "vla_dipole.model.policy",
    "DipolePolicy": "vla_dipole.model.policy",
    "from_openvla": "vla_dipole.model.openvla_checkpoint",
    "save_openvla_layout": "vla_dipole.model.openvla_checkpoint",
    "OpenVLACheckpoint": "vla_dipole.model.openvla_checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vla_dipole.model' has no attribute {name!r}")


__all__ = [
    *_LAZY,
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
