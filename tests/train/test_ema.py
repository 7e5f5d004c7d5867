"""EMA of the trainable weights: warm-up decay, averaging, save / load round trip."""

from pathlib import Path

import torch
from accelerate import Accelerator

from vla_dipole.training.ema import HeadEMA


def test_ema_tracks_weights_and_round_trips(tmp_path: Path) -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    ema = HeadEMA(Accelerator(), [p], decay=0.5)
    expected = torch.zeros(3)
    for value in (1.0, 2.0, 3.0):
        d = ema.current_decay()
        with torch.no_grad():
            p.fill_(value)
        ema.update()
        expected = d * expected + (1 - d) * value
    assert ema.current_decay() == 4 / 13  # still in warm-up: min(0.5, (1 + 3) / (10 + 3))
    torch.testing.assert_close(ema.shadow[0], expected)
    ema.save(tmp_path)
    other = HeadEMA(Accelerator(), [torch.nn.Parameter(torch.ones(3))], decay=0.5)
    other.load(tmp_path)
    target = torch.nn.Parameter(torch.zeros(3))
    other.copy_to([target])
    torch.testing.assert_close(target.detach(), expected)
    assert other.num_updates == 3
