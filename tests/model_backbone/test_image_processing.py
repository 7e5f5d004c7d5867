"""Image preprocessing: resize-naive bicubic like PIL, DINO + SigLIP normalisation, layouts, augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image

from vla_dipole.model.backbone_config import DINO_MEAN, DINO_STD, SIGLIP_MEAN, SIGLIP_STD
from vla_dipole.model.image_processing import PrismaticImageProcessor


def _frame(h=90, w=160, seed=0):
    rng = np.random.default_rng(seed)
    # smooth image (plus noise) so the resize comparison is meaningful
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(x / 9.0 + c) * np.cos(y / 7.0) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


def test_matches_pil_bicubic_and_both_normalisations():
    img = _frame()
    out = PrismaticImageProcessor(image_size=224)(img)
    assert out.shape == (6, 224, 224)
    ref = np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
    ref = torch.from_numpy(ref).permute(2, 0, 1)
    for sl, mean, std in ((slice(0, 3), DINO_MEAN, DINO_STD), (slice(3, 6), SIGLIP_MEAN, SIGLIP_STD)):
        expect = (ref - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        err = (out[sl] - expect).abs() * torch.tensor(std).view(3, 1, 1) * 255  # in pixel levels
        assert err.mean() < 0.1 and err.max() <= 1.01


def test_layouts_and_batch_dims_agree():
    img = _frame()
    proc = PrismaticImageProcessor(image_size=56)
    single = proc(img)
    assert torch.equal(proc(Image.fromarray(img)), single)
    assert torch.equal(proc(torch.from_numpy(img).permute(2, 0, 1)), single)
    batch = proc(np.stack([np.stack([img, _frame(seed=1)])] * 3))  # [B=3, cams=2, H, W, 3]
    assert batch.shape == (3, 2, 6, 56, 56)
    assert torch.equal(batch[2, 0], single)
    floats = proc(torch.from_numpy(img).permute(2, 0, 1).float() / 255)
    assert (floats - single).abs().max() < 0.05
    with pytest.raises(ValueError, match="RGB"):
        proc(np.zeros((10, 10, 4), dtype=np.uint8))


def test_augmentation_is_random_per_image_and_bounded():
    img = np.stack([_frame()] * 4)
    plain = PrismaticImageProcessor(image_size=56)(img)
    aug = PrismaticImageProcessor(image_size=56, augment=True)
    torch.manual_seed(0)
    a = aug(img)
    torch.manual_seed(0)
    assert torch.equal(aug(img), a)  # seeded through torch's RNG
    assert a.shape == plain.shape
    assert (a[0] - a[1]).abs().mean() > 1e-3  # drawn per image
    assert (a - plain).abs().mean() > 1e-3
    lo = (0 - torch.tensor(DINO_MEAN)) / torch.tensor(DINO_STD)
    hi = (1 - torch.tensor(DINO_MEAN)) / torch.tensor(DINO_STD)
    assert (a[:, :3] >= lo.view(3, 1, 1) - 1e-5).all() and (a[:, :3] <= hi.view(3, 1, 1) + 1e-5).all()
    center = PrismaticImageProcessor(image_size=56, center_crop=True)(img)
    assert not torch.allclose(center, plain)
