"""Where NAVSIM data lives: the three environment variables NAVSIM's scripts read.

An explicit argument always wins over the environment; when neither is there the error says which
variable to set, because a silent default would read the wrong dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

OPENSCENE_DATA_ROOT = "OPENSCENE_DATA_ROOT"
NUPLAN_MAPS_ROOT = "NUPLAN_MAPS_ROOT"
NAVSIM_EXP_ROOT = "NAVSIM_EXP_ROOT"


class DataPathError(FileNotFoundError):
    """A data root is not given, not set in the environment, or does not exist."""


def _resolve(value: str | os.PathLike | None, env_var: str, what: str, must_exist: bool) -> Path:
    if value is None or str(value) == "":
        value = os.environ.get(env_var)
        if not value:
            raise DataPathError(
                f"{what}: no path given and environment variable {env_var} is not set; pass it or export {env_var}=<dir>"
            )
        source = f"${env_var}"
    else:
        source = "argument"
    path = Path(value).expanduser()
    if must_exist and not path.is_dir():
        raise DataPathError(f"{what}: {path} (from {source}) is not a directory")
    return path


def openscene_data_root(data_root: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """The OpenScene root holding `navsim_logs/` and `sensor_blobs/` (default `$OPENSCENE_DATA_ROOT`)."""
    return _resolve(data_root, OPENSCENE_DATA_ROOT, "OpenScene data root", must_exist)


def nuplan_maps_root(maps_root: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """The nuPlan maps root (default `$NUPLAN_MAPS_ROOT`)."""
    return _resolve(maps_root, NUPLAN_MAPS_ROOT, "nuPlan maps root", must_exist)


def navsim_exp_root(exp_root: str | os.PathLike | None = None, must_exist: bool = False) -> Path:
    """Where experiments and caches are written (default `$NAVSIM_EXP_ROOT`); created by its users."""
    return _resolve(exp_root, NAVSIM_EXP_ROOT, "NAVSIM experiment root", must_exist)


def navsim_log_dir(data_root: Path, split: str) -> Path:
    """`<root>/navsim_logs/<split>`: one pickle per log."""
    return Path(data_root) / "navsim_logs" / split


def sensor_blobs_dir(data_root: Path, split: str) -> Path:
    """`<root>/sensor_blobs/<split>`: the frame dicts' `data_path`s are relative to it."""
    return Path(data_root) / "sensor_blobs" / split
