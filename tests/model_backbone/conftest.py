"""Fixtures for the backbone tests: a tiny exact-structure backbone and an in-process tokenizer."""

import pytest
import torch

from vla_dipole.model.backbone import PrismaticBackbone
from vla_dipole.model.backbone_config import BackboneConfig
from vla_dipole.model.prompt import build_tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_config() -> BackboneConfig:
    return BackboneConfig.preset("tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_backbone(tiny_config) -> PrismaticBackbone:
    torch.manual_seed(0)
    model = PrismaticBackbone(tiny_config).eval()
    randomize_layer_scale(model)
    return model


def randomize_layer_scale(model: PrismaticBackbone) -> None:
    """LayerScale starts at 1e-5; make it O(1) so the DINO blocks (and their key mapping) matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ls1.gamma", "ls2.gamma")):
                p.uniform_(0.5, 1.5)


@pytest.fixture(scope="session")
def make_inputs():
    """``make_inputs(config, batch, n_images, length, seed) -> (pixel_values, input_ids, attention_mask)``."""
    return random_inputs


def random_inputs(config: BackboneConfig, batch: int = 2, n_images: int = 2, length: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = config.image_size
    pixel_values = torch.randn(batch, n_images, 6, s, s, generator=g)
    ids = torch.randint(3, 250, (batch, length), generator=g)
    ids[:, 0] = config.llm.bos_token_id
    mask = torch.ones_like(ids)
    return pixel_values, ids, mask
