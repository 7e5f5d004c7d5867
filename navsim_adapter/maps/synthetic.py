"""`SyntheticMap`: the `MapAPI` of the synthetic world, read from its JSON map file.

File format (written by `data_prep.synthesize`, one file per log at
`<data_root>/synthetic_maps/<map_name>.json`; full description in docs/synthetic_world.md)::

    {"format": "vla-dipole/synthetic-map", "version": 1, "map_name": "...",
     "layers": {"LANE": [...], "LANE_CONNECTOR": [...], "ROADBLOCK": [...], "ROADBLOCK_CONNECTOR": [...],
                "INTERSECTION": [...], "CROSSWALK": [...], "WALKWAYS": [...], "CARPARK_AREA": [...]},
     "traffic_lights": [{"position": [x, y, z], "lane_connector_ids": ["..."]}]}

Every object has `id` (string) and `polygon` ([[x, y], ...], global metres). Lanes and lane
connectors add `baseline` ([[x, y, heading], ...]), `roadblock_id` (a ROADBLOCK or
ROADBLOCK_CONNECTOR id), `speed_limit_mps`, `width`, `incoming_ids`, `outgoing_ids`; roadblocks
and roadblock connectors add `lane_ids`. Frames' `roadblock_ids` (the route) and
`traffic_lights` ids refer to these ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from shapely import STRtree
from shapely.geometry import Point, Polygon

from navsim_adapter.maps.base import LaneLike, MapAPI, MapLayer, MapObject

MAP_FORMAT = "vla-dipole/synthetic-map"
SUPPORTED_VERSIONS = (1,)
LANE_LAYERS = (MapLayer.LANE, MapLayer.LANE_CONNECTOR)


class MapFormatError(ValueError):
    """A synthetic map file does not follow the documented format."""


class _Reader:
    """Field access that names the file and the field in every error."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, expected: str, got: Any) -> None:
        raise MapFormatError(f"{self.path}: {where}: expected {expected}, got {str(got)[:80]!r}")

    def field(self, obj: dict, key: str, where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            self.fail(
                f"{where}.{key}", "a value (missing field)", obj if not isinstance(obj, dict) else sorted(obj)
            )
        return obj[key]

    def array(self, obj: dict, key: str, where: str, cols: int, min_rows: int) -> np.ndarray:
        value = self.field(obj, key, where)
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if (
            arr is None
            or arr.ndim != 2
            or arr.shape[1] != cols
            or len(arr) < min_rows
            or not np.isfinite(arr).all()
        ):
            self.fail(f"{where}.{key}", f"a list of >= {min_rows} finite [{cols} numbers] rows", value)
        return arr

    def ids(self, obj: dict, key: str, where: str) -> tuple[str, ...]:
        value = self.field(obj, key, where)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(f"{where}.{key}", "a list of string ids", value)
        return tuple(value)


class SyntheticMap(MapAPI):
    """All layers of one synthetic map in memory, with an R-tree per layer for radius queries."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        r = _Reader(self.path)
        try:
            raw = json.loads(self.path.read_text())
        except json.JSONDecodeError as err:
            raise MapFormatError(f"{self.path}: not valid JSON ({err})") from err
        if not isinstance(raw, dict) or raw.get("format") != MAP_FORMAT:
            r.fail(
                "format", repr(MAP_FORMAT), raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            )
        if raw.get("version") not in SUPPORTED_VERSIONS:
            r.fail("version", f"one of {SUPPORTED_VERSIONS}", raw.get("version"))
        self._name = str(r.field(raw, "map_name", "map"))
        layers = r.field(raw, "layers", "map")
        if not isinstance(layers, dict):
            r.fail("layers", "an object keyed by layer name", layers)
        unknown = set(layers) - {layer.value for layer in MapLayer}
        if unknown:
            r.fail("layers", f"keys from {[layer.value for layer in MapLayer]}", sorted(unknown))
        self._objects: dict[MapLayer, list[MapObject]] = {}
        self._lanes: dict[str, LaneLike] = {}
        for layer in MapLayer:
            items = layers.get(layer.value, [])
            if not isinstance(items, list):
                r.fail(f"layers.{layer.value}", "a list of objects", items)
            self._objects[layer] = [
                self._parse(r, layer, item, f"layers.{layer.value}[{i}]") for i, item in enumerate(items)
            ]
        for layer in LANE_LAYERS:
            for lane in self._objects[layer]:
                self._lanes[lane.id] = lane  # type: ignore[assignment]
        self._trees = {
            layer: STRtree([o.polygon for o in objs]) for layer, objs in self._objects.items() if objs
        }
        self.traffic_light_connectors: dict[str, tuple[float, float, float]] = {}
        for i, light in enumerate(raw.get("traffic_lights", [])):
            where = f"traffic_lights[{i}]"
            pos = r.field(light, "position", where)
            for cid in r.ids(light, "lane_connector_ids", where):
                if cid not in self._lanes:
                    r.fail(f"{where}.lane_connector_ids", "ids of LANE_CONNECTOR objects", cid)
                self.traffic_light_connectors[cid] = tuple(float(v) for v in pos)

    @staticmethod
    def _parse(r: _Reader, layer: MapLayer, item: dict, where: str) -> MapObject:
        obj_id = r.field(item, "id", where)
        if not isinstance(obj_id, str):
            r.fail(f"{where}.id", "a string id", obj_id)
        polygon = Polygon(r.array(item, "polygon", where, cols=2, min_rows=3))
        if not polygon.is_valid:
            polygon = polygon.buffer(0)
        if layer not in LANE_LAYERS:
            return MapObject(obj_id, layer, polygon)
        speed = r.field(item, "speed_limit_mps", where)
        if speed is not None and not isinstance(speed, int | float):
            r.fail(f"{where}.speed_limit_mps", "a number (m/s) or null", speed)
        roadblock = r.field(item, "roadblock_id", where)
        if not isinstance(roadblock, str):
            r.fail(f"{where}.roadblock_id", "a string id", roadblock)
        return LaneLike(
            obj_id,
            layer,
            polygon,
            baseline=r.array(item, "baseline", where, cols=3, min_rows=2),
            roadblock_id=roadblock,
            speed_limit_mps=None if speed is None else float(speed),
            incoming_ids=r.ids(item, "incoming_ids", where),
            outgoing_ids=r.ids(item, "outgoing_ids", where),
        )

    @property
    def map_name(self) -> str:
        return self._name

    def objects(self, layer: MapLayer) -> list[MapObject]:
        return list(self._objects[MapLayer(layer)])

    def lane(self, lane_id: str) -> LaneLike:
        try:
            return self._lanes[str(lane_id)]
        except KeyError:
            raise KeyError(
                f"map {self._name!r} ({self.path}) has no lane or lane connector with id {lane_id!r}"
            ) from None

    def objects_near(self, xy: np.ndarray, radius: float, layers: tuple[MapLayer, ...]) -> list[MapObject]:
        """Same result as the base method, via the per-layer R-trees."""
        circle = Point(float(xy[0]), float(xy[1])).buffer(radius)
        out: list[MapObject] = []
        for layer in layers:
            tree = self._trees.get(MapLayer(layer))
            if tree is not None:
                hits = np.sort(tree.query(circle, predicate="intersects"))
                out.extend(self._objects[MapLayer(layer)][i] for i in hits)
        return out

    def red_lane_connectors(self, traffic_lights: list[tuple[str, bool]]) -> list[LaneLike]:
        """The lane connectors that a frame's `traffic_lights` list marks red."""
        return [self.lane(cid) for cid, is_red in traffic_lights if is_red]
