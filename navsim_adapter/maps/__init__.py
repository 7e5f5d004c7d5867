"""Map queries the PDM scorer and the visualiser need, independent of where the map comes from."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from navsim_adapter.maps.base import LaneLike, MapAPI, MapLayer, MapObject
from navsim_adapter.maps.synthetic import MapFormatError, SyntheticMap

SYNTHETIC_MAPS_DIR = "synthetic_maps"


def synthetic_map_path(map_name: str, data_root: str | os.PathLike) -> Path:
    return Path(data_root) / SYNTHETIC_MAPS_DIR / f"{map_name}.json"


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> SyntheticMap:
    return SyntheticMap(path)


def load_map(map_name: str, data_root: str | os.PathLike | None = None) -> MapAPI:
    """The map of a log: `<data_root>/synthetic_maps/<map_name>.json` (default root `$OPENSCENE_DATA_ROOT`).

    Maps are cached per file (and reloaded when the file changes), since every scene of a log asks for it.
    """
    from navsim_adapter.paths import openscene_data_root

    root = openscene_data_root(data_root, must_exist=False)
    path = synthetic_map_path(map_name, root)
    if not path.is_file():
        raise FileNotFoundError(
            f"map {map_name!r}: {path} does not exist. Synthetic logs keep their map next to the logs in "
            f"<data_root>/{SYNTHETIC_MAPS_DIR}/ (regenerate with `python -m data_prep.synthesize`); real OpenScene logs "
            "use nuPlan maps: set NUPLAN_MAPS_ROOT and score through the official metric cache (metric_cache_path)."
        )
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)


__all__ = [
    "LaneLike",
    "MapAPI",
    "MapFormatError",
    "MapLayer",
    "MapObject",
    "SyntheticMap",
    "load_map",
    "synthetic_map_path",
]
