"""A tiny synthetic split, generated once per test session and shared by the synthetic tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_prep.synthesize import ground_truth_path, synthesize
from data_prep.world.scenarios import FAMILIES

SPLIT = "tiny"
NUM_FRAMES = 20  # one NAVSIM scene (4 history + 10 future) per log, plus slack
IMAGE_SIZE = (96, 54)
CAMERAS = ("CAM_F0", "CAM_L0", "CAM_R0")


@dataclass
class SyntheticSplit:
    root: Path
    split: str
    seed: int
    logs: list[Path]
    image_size: tuple[int, int] = IMAGE_SIZE
    cameras: tuple[str, ...] = CAMERAS

    def truth(self, log: Path) -> dict:
        return json.loads(ground_truth_path(self.root, self.split, log.stem).read_text())


@pytest.fixture(scope="session")
def synthetic_split(tmp_path_factory) -> SyntheticSplit:
    root = tmp_path_factory.mktemp("synthetic")
    logs = synthesize(
        root,
        SPLIT,
        len(FAMILIES),
        seed=7,
        frames_per_log=NUM_FRAMES,
        image_size=IMAGE_SIZE,
        cameras=CAMERAS,
        workers=1,
        progress=False,
    )
    return SyntheticSplit(root, SPLIT, 7, logs)
