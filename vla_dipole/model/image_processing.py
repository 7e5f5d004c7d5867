"""OpenVLA image preprocessing as batched torch ops: resize-naive bicubic + DINO/SigLIP normalisation.

Public API:
- ``PrismaticImageProcessor(image_size=224, means=..., stds=..., augment=False)`` (or
  ``PrismaticImageProcessor.from_config(BackboneConfig, augment=...)``).
  ``__call__(images) -> pixel_values [..., 6, S, S]``: channels 0:3 are the DINO-normalised and 3:6 the
  SigLIP-normalised copy of the same RGB frame. ``images`` may be a uint8 tensor/array ``[..., H, W, 3]``
  (HWC, e.g. camera frames) or ``[..., 3, H, W]`` (CHW), a float tensor in [0, 1] (CHW), a PIL image or a list
  of PIL images; leading dims (batch, cameras) are kept.
- ``augment=True`` adds OpenVLA's fine-tuning augmentation: random-resized-crop at 90 % area (ratio 1)
  and colour jitter (brightness 0.2, contrast/saturation [0.8, 1.2], hue 0.05), drawn per image;
  ``center_crop=True`` applies the matching centre 90 % crop at evaluation. No horizontal flip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from vla_dipole.model.backbone_config import DINO_MEAN, DINO_STD, SIGLIP_MEAN, SIGLIP_STD, BackboneConfig

CROP_AREA = 0.9


class PrismaticImageProcessor:
    """Turns RGB frames into the fused 6-channel pixel values the backbone expects."""

    def __init__(
        self,
        image_size: int = 224,
        means: Sequence[Sequence[float]] = (DINO_MEAN, SIGLIP_MEAN),
        stds: Sequence[Sequence[float]] = (DINO_STD, SIGLIP_STD),
        augment: bool = False,
        center_crop: bool = False,
    ) -> None:
        self.image_size = image_size
        self.mean = torch.tensor([c for m in means for c in m], dtype=torch.float32).view(6, 1, 1)
        self.std = torch.tensor([c for s in stds for c in s], dtype=torch.float32).view(6, 1, 1)
        self.augment = augment
        self.center_crop = center_crop
        self._jitter = v2.ColorJitter(brightness=0.2, contrast=(0.8, 1.2), saturation=(0.8, 1.2), hue=0.05)
        self._crop = v2.RandomResizedCrop(
            image_size,
            scale=(CROP_AREA, CROP_AREA),
            ratio=(1.0, 1.0),
            interpolation=v2.InterpolationMode.BICUBIC,
        )

    @classmethod
    def from_config(cls, config: BackboneConfig, augment: bool = False, center_crop: bool = False):
        return cls(
            config.image_size,
            (config.featurizer.mean, config.fused_featurizer.mean),
            (config.featurizer.std, config.fused_featurizer.std),
            augment=augment,
            center_crop=center_crop,
        )

    def __call__(self, images) -> torch.Tensor:
        x = to_chw(images)
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        # uint8 frames are resized as uint8 (like PIL then ToTensor); floats are clamped back to [0, 1].
        x = self._augment(x) if self.augment else self._resize(x)
        x = F.to_dtype(x, torch.float32, scale=True).clamp(0.0, 1.0)
        x = torch.cat([x, x], dim=1)  # same frame for both featurizers
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return x.reshape(*lead, 6, self.image_size, self.image_size)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.center_crop:
            h, w = x.shape[-2:]
            side = math.sqrt(CROP_AREA)
            x = F.center_crop(x, [round(h * side), round(w * side)])
        size = [self.image_size, self.image_size]
        return F.resize(x, size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image crop + jitter; draws from torch's global RNG (seed it with ``torch.manual_seed``)."""
        return torch.stack([self._jitter(_clamp(self._crop(img))) for img in x])


def _clamp(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0) if x.is_floating_point() else x


def to_chw(images) -> torch.Tensor:
    """Images in any common layout -> uint8 or float tensor [..., 3, H, W]."""
    if isinstance(images, (list, tuple)):
        return torch.stack([to_chw(im) for im in images])
    if not isinstance(images, (torch.Tensor, np.ndarray)):  # PIL
        images = np.array(images.convert("RGB"))
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.ndim < 3:
        raise ValueError(f"images: expected [..., H, W, 3] or [..., 3, H, W], got shape {tuple(x.shape)}")
    if x.shape[-3] != 3:
        if x.shape[-1] != 3:
            raise ValueError(f"images: expected 3 RGB channels first or last, got shape {tuple(x.shape)}")
        x = x.movedim(-1, -3)
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(f"images: expected uint8 or float in [0, 1], got dtype {x.dtype}")
    return x
