"""EMA of the trainable weights (diffusers' EMAModel), ZeRO-3 aware.

Under ZeRO-3 a rank only holds a slice of each parameter, so the EMA update and the copy into the
exported policy gather the full values first. The EMA lives on every rank (identical values) so that
any rank can export and the checkpoint only needs rank 0's copy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel

from vla_dipole.training.distributed import gathered_params

EMA_FILE = "ema.pt"


class HeadEMA:
    """Exponential moving average of `params` with `decay` (diffusers' warm-up schedule)."""

    def __init__(self, accelerator: Accelerator, params: list[torch.nn.Parameter], decay: float) -> None:
        self.accelerator = accelerator
        self.params = params
        with gathered_params(accelerator, params):
            self.ema = EMAModel([p.detach().clone() for p in params], decay=decay)

    @torch.no_grad()
    def update(self) -> None:
        with gathered_params(self.accelerator, self.params):
            self.ema.step(self.params)

    @torch.no_grad()
    def copy_to(self, params: list[torch.nn.Parameter]) -> None:
        """Write the averaged values into `params` (full, unpartitioned parameters of an exported model)."""
        self.ema.copy_to(params)

    def save(self, directory: Path) -> None:
        torch.save(self.ema.state_dict(), Path(directory) / EMA_FILE)

    def load(self, directory: Path) -> None:
        path = Path(directory) / EMA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint has no EMA weights but ema.enabled=true")
        self.ema.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
