"""EMA of the trainable weights: warm-up decay, averaging, save / load round trip."""

from pathlib import Path

import torch
from accelerate import Accelerator

from vla_dipole.training.ema import HeadEMA


def test_ema_tracks_weights_and_round_trips(tmp_path: Path) -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    ema = HeadEMA(Accelerator(), [p], decay=0.5)
    # by hand: d_n = min(0.5, (1 + n) / (10 + n)) = 1/10, 2/11, 3/12, and s <- d s + (1 - d) value:
    # 0.9 * 1 = 0.9; (2 * 0.9 + 9 * 2) / 11 = 1.8; 0.25 * 1.8 + 0.75 * 3 = 2.7
    for value, after in ((1.0, 0.9), (2.0, 1.8), (3.0, 2.7)):
        with torch.no_grad():
            p.fill_(value)
        ema.update()
        torch.testing.assert_close(ema.shadow[0], torch.full((3,), after))
    assert ema.current_decay() == 4 / 13  # still in warm-up: (1 + 3) / (10 + 3) < 0.5
    expected = torch.full((3,), 2.7)
    ema.save(tmp_path)
    other = HeadEMA(Accelerator(), [torch.nn.Parameter(torch.ones(3))], decay=0.5)
    other.load(tmp_path)
    target = torch.nn.Parameter(torch.zeros(3))
    other.copy_to([target])
    torch.testing.assert_close(target.detach(), expected)
    assert other.num_updates == 3


def test_ema_decay_reaches_its_cap() -> None:
    ema = HeadEMA(Accelerator(), [torch.nn.Parameter(torch.zeros(1))], decay=0.5)
    decays = []
    for _ in range(12):
        decays.append(ema.current_decay())
        ema.update()
    assert decays[:3] == [1 / 10, 2 / 11, 3 / 12] and decays[8:] == [0.5] * 4  # (1 + 8) / 18 = 0.5
