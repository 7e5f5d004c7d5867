"""The sampling options every command that runs a policy shares, defined once: `--omega` (the
greediness of `eps = (1 + omega) eps+ - omega eps-`, one value or a comma-separated sweep) and
`--steps` (denoising steps). No torch import: a shard build's spawned workers import their CLI module.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse_omega(text: str) -> float:
    """One guidance weight >= 0."""
    omegas = parse_omegas(text)
    if len(omegas) != 1:
        raise argparse.ArgumentTypeError(f"--omega expects one number here, got {text!r}")
    return omegas[0]


def parse_omegas(text: str) -> tuple[float, ...]:
    """Comma-separated guidance weights, each >= 0."""
    try:
        omegas = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--omega expects comma-separated numbers, got {text!r}") from err
    if not omegas or any(o < 0 for o in omegas):
        raise argparse.ArgumentTypeError(f"--omega needs one or more values >= 0, got {text!r}")
    return omegas


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def add_sampling_args(
    parser: argparse.ArgumentParser,
    *,
    omega: float | Sequence[float] = 1.0,
    sweep: bool = False,
    steps_aliases: Sequence[str] = (),
    what: str = "",
) -> None:
    """Add `--omega` (a sweep when `sweep`, its default `omega`) and `--steps` (default: the checkpoint's)."""
    default = tuple(float(o) for o in omega) if sweep else float(omega)  # type: ignore[union-attr, arg-type]
    shown = ",".join(f"{o:g}" for o in default) if sweep else f"{default:g}"  # type: ignore[union-attr]
    parser.add_argument(
        "--omega",
        type=parse_omegas if sweep else parse_omega,
        default=default,
        help=f"guidance weight{'s, comma-separated' if sweep else ''} {what}(each >= 0; default {shown})",
    )
    parser.add_argument(
        "--steps",
        *steps_aliases,
        dest="steps",
        type=positive_int,
        default=None,
        help=f"denoising steps {what}(default: the checkpoint's)",
    )
