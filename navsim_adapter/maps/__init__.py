"""Map queries the PDM scorer and the visualiser need, independent of where the map comes from."""

from navsim_adapter.maps.base import LaneLike, MapAPI, MapLayer, MapObject

__all__ = ["LaneLike", "MapAPI", "MapLayer", "MapObject"]
