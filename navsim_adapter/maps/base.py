"""The map interface.

nuPlan GeoPackage maps are large and often missing, so scoring and plotting never talk to them
directly: they use this small interface. Implementations: the synthetic world's JSON map
(`navsim_adapter.maps.synthetic`) and, with the official packages, real maps / metric caches.
Layer names follow nuPlan's `SemanticMapLayer` so contexts built from either source agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from shapely.geometry import Polygon


class MapLayer(str, Enum):  # noqa: UP042 - str mixin keeps str(layer) == "MapLayer.X" semantics stable
    """nuPlan semantic map layers used by NAVSIM's drivable-area map and route logic."""

    LANE = "LANE"
    LANE_CONNECTOR = "LANE_CONNECTOR"
    ROADBLOCK = "ROADBLOCK"
    ROADBLOCK_CONNECTOR = "ROADBLOCK_CONNECTOR"
    INTERSECTION = "INTERSECTION"
    CARPARK_AREA = "CARPARK_AREA"
    CROSSWALK = "CROSSWALK"
    WALKWAYS = "WALKWAYS"


# Layers whose union is the drivable area in NAVSIM's PDMDrivableMap.
DRIVABLE_LAYERS = (
    MapLayer.ROADBLOCK,
    MapLayer.ROADBLOCK_CONNECTOR,
    MapLayer.INTERSECTION,
    MapLayer.CARPARK_AREA,
)


@dataclass(frozen=True)
class MapObject:
    """A polygonal map element with a string id (nuPlan ids are strings)."""

    id: str
    layer: MapLayer
    polygon: Polygon


@dataclass(frozen=True)
class LaneLike(MapObject):
    """A lane or lane connector: a polygon plus its baseline path in global coordinates.

    `baseline` is (N, 3) = x, y, heading along the lane centre. `roadblock_id` is the parent
    roadblock (or roadblock connector) id, which is what NAVSIM routes are expressed in.
    """

    baseline: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    roadblock_id: str = ""
    speed_limit_mps: float | None = None
    incoming_ids: tuple[str, ...] = ()
    outgoing_ids: tuple[str, ...] = ()


class MapAPI(ABC):
    """Read-only map queries, all in global coordinates (metres, radians)."""

    @property
    @abstractmethod
    def map_name(self) -> str: ...

    @abstractmethod
    def objects(self, layer: MapLayer) -> list[MapObject]:
        """Every object of one layer (lanes / lane connectors are returned as `LaneLike`)."""

    @abstractmethod
    def lane(self, lane_id: str) -> LaneLike:
        """A lane or lane connector by id; KeyError naming the id if unknown."""

    def objects_near(self, xy: np.ndarray, radius: float, layers: tuple[MapLayer, ...]) -> list[MapObject]:
        """Objects of `layers` whose polygon lies within `radius` metres of point `xy`."""
        from shapely.geometry import Point

        centre = Point(float(xy[0]), float(xy[1])).buffer(radius)
        return [o for layer in layers for o in self.objects(layer) if o.polygon.intersects(centre)]

    def lanes_of_roadblocks(self, roadblock_ids: list[str]) -> list[LaneLike]:
        """Lanes and lane connectors belonging to the given roadblocks (the on-route lanes)."""
        wanted = set(roadblock_ids)
        out: list[LaneLike] = []
        for layer in (MapLayer.LANE, MapLayer.LANE_CONNECTOR):
            out.extend(o for o in self.objects(layer) if isinstance(o, LaneLike) and o.roadblock_id in wanted)
        return out

    def speed_limit(self, lane_id: str) -> float | None:
        return self.lane(lane_id).speed_limit_mps
