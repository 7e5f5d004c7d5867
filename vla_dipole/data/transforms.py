"""Optional backbone image transform of ../shared/docs/openvla.md §5 (Prismatic "resize-naive").

The model's processor owns normalisation; this is for pipelines that want it done in loader workers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DINO_MEAN, DINO_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def openvla_pixel_values(images: np.ndarray | torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 6, size, size): bicubic antialiased resize ignoring aspect ratio,
    scaled to [0, 1], then DINO-normalised channels followed by SigLIP-normalised ones."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(
            0, 1
        )
    out = []
    for mean, std in ((DINO_MEAN, DINO_STD), (SIGLIP_MEAN, SIGLIP_STD)):
        m = torch.tensor(mean).view(1, 3, 1, 1)
        s = torch.tensor(std).view(1, 3, 1, 1)
        out.append((x - m) / s)
    return torch.cat(out, dim=1)
