"""EMA of the trainable weights (heads, LoRA), ZeRO-3 aware.

Under ZeRO-3 a rank only holds a slice of each parameter, so the update and the export gather the
full values first. (diffusers' EMAModel is not used: under accelerate's ZeRO-3 it calls an
unimported `deepspeed` module, and it would gather each parameter a second time.) The shadow copy
lives on every rank with identical values, so rank 0's copy is enough in a checkpoint.
Decay warm-up as in diffusers / timm: d_n = min(decay, (1 + n) / (10 + n)) at update n.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator

from vla_dipole.training.distributed import gathered_params

EMA_FILE = "ema.pt"


class HeadEMA:
    """Exponential moving average of `params` with `decay`."""

    def __init__(self, accelerator: Accelerator, params: list[torch.nn.Parameter], decay: float) -> None:
        self.accelerator, self.params, self.decay = accelerator, params, float(decay)
        self.num_updates = 0
        with gathered_params(accelerator, params):
            self.shadow = [p.detach().clone() for p in params]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self) -> None:
        decay = self.current_decay()
        with gathered_params(self.accelerator, self.params):
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, params: list[torch.nn.Parameter]) -> None:
        """Write the averaged values into `params` (full, unpartitioned parameters of an exported model)."""
        for p, s in zip(params, self.shadow, strict=True):
            p.copy_(s)

    def save(self, directory: Path) -> None:
        torch.save({"shadow": self.shadow, "num_updates": self.num_updates}, Path(directory) / EMA_FILE)

    def load(self, directory: Path) -> None:
        path = Path(directory) / EMA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint has no EMA weights but ema.enabled=true")
        state = torch.load(path, map_location=self.accelerator.device, weights_only=True)
        self.shadow, self.num_updates = state["shadow"], int(state["num_updates"])
