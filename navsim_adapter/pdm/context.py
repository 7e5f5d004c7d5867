"""ScoringContext: everything the PDM score needs about one scene, as plain arrays + polygons.

A context is built once per scene (from our Scene + MapAPI, or from a real NAVSIM metric cache)
and then reused for every candidate of every round. All coordinates are global (metres, radians).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from shapely.geometry import Polygon

from navsim_adapter.pdm.geometry import PolygonSet
from navsim_adapter.pdm.simulation import NUM_STEPS, STATE_DIM

# nuPlan TrackedObjectType names (lower case). Agents (moving kinds) score 0 when hit at fault,
# static objects 0.5; only agents carry a velocity.
AGENT_TYPES = ("vehicle", "pedestrian", "bicycle")
STATIC_TYPES = ("traffic_cone", "barrier", "czone_sign", "generic_object")
OBJECT_TYPES = AGENT_TYPES + STATIC_TYPES

# Map layers of NAVSIM's drivable-area map and their roles.
DRIVABLE_AREA_LAYERS = ("ROADBLOCK", "INTERSECTION", "DRIVABLE_AREA", "CARPARK_AREA")
LANE_LAYERS = ("LANE", "LANE_CONNECTOR")
MAP_LAYERS = DRIVABLE_AREA_LAYERS + LANE_LAYERS

# Agents are needed for 4 s of simulation plus 1 s look-ahead for TTC (v1 evaluates all 41 steps).
AGENT_STEPS = NUM_STEPS + 1 + 10


@dataclass
class ScoringContext:
    """One scene, ready for scoring.

    Attributes:
        token: scene token. timestamp_us: time of the current frame [µs] (used for NAVSIM's
            microsecond sampling grid).
        ego_state: (11,) current rear-axle state: x, y, heading, vx, vy, ax, ay, steering angle,
            steering rate, yaw rate, yaw acceleration (vx, vy, ax, ay in the ego frame).
        agent_tokens / agent_types: per tracked object (types from OBJECT_TYPES).
        agent_boxes: (T, M, 5) x, y, heading, length, width at 10 Hz from t = 0 (T = 41..51).
        agent_velocity: (T, M, 2) global velocity; agent_valid: (T, M) whether the object exists.
        map_ids / map_layers / map_polygons: the drivable-area map (layers from MAP_LAYERS).
        route_lane_ids: lanes / lane connectors on the route.
        centerline: (P, 3) route centreline poses (x, y, heading).
        red_light_ids: on-route lane connectors that can be red; red_light_polygons their polygons;
            red_light_active: (T, K) bool, red at that 10 Hz step.
        reference_poses: (41, 3) PDM-Closed reference at 0.1 s, used to normalise progress.
        human_trajectory: (8, 3) logged future, local to the current rear axle (None if unknown).
        past_states: (H, 11) logged ego states at 0.1 s before t0 for history comfort (or None).
        is_synthetic: NAVSIM v2 synthetic scene (the human filter is not applied).
    """

    token: str
    timestamp_us: int
    ego_state: np.ndarray
    agent_tokens: list[str]
    agent_types: list[str]
    agent_boxes: np.ndarray
    agent_velocity: np.ndarray
    agent_valid: np.ndarray
    map_ids: list[str]
    map_layers: list[str]
    map_polygons: list[Polygon]
    route_lane_ids: list[str]
    centerline: np.ndarray
    reference_poses: np.ndarray
    red_light_ids: list[str] = field(default_factory=list)
    red_light_polygons: list[Polygon] = field(default_factory=list)
    red_light_active: np.ndarray | None = None
    human_trajectory: np.ndarray | None = None
    past_states: np.ndarray | None = None
    is_synthetic: bool = False
    log_name: str = ""

    def __post_init__(self) -> None:
        self.validate()

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the scene and the field when an array is malformed."""

        def bad(name: str, expected: str, got) -> ValueError:
            return ValueError(f"ScoringContext {self.token!r}: field {name!r} expected {expected}, got {got}")

        self.ego_state = np.asarray(self.ego_state, dtype=np.float64)
        if self.ego_state.shape != (STATE_DIM,) or not np.isfinite(self.ego_state).all():
            raise bad("ego_state", f"finite array of shape ({STATE_DIM},)", self.ego_state)
        m = len(self.agent_tokens)
        self.agent_boxes = np.asarray(self.agent_boxes, dtype=np.float64)
        if self.agent_boxes.ndim != 3 or self.agent_boxes.shape[1:] != (m, 5):
            raise bad("agent_boxes", f"(T, M={m}, 5) x, y, heading, length, width", self.agent_boxes.shape)
        t = self.agent_boxes.shape[0]
        if t < NUM_STEPS + 1:
            raise bad("agent_boxes", f"at least {NUM_STEPS + 1} steps (T, M, 5)", self.agent_boxes.shape)
        self.agent_velocity = np.asarray(self.agent_velocity, dtype=np.float64).reshape(t, m, 2)
        self.agent_valid = np.asarray(self.agent_valid, dtype=bool).reshape(t, m)
        if len(self.agent_types) != m:
            raise bad("agent_types", f"{m} entries", len(self.agent_types))
        unknown = sorted(set(self.agent_types) - set(OBJECT_TYPES))
        if unknown:
            raise bad("agent_types", f"values in {OBJECT_TYPES}", unknown)
        if not np.isfinite(self.agent_boxes[self.agent_valid]).all():
            raise bad("agent_boxes", "finite values where agent_valid", "NaN/inf")
        if not (len(self.map_ids) == len(self.map_layers) == len(self.map_polygons)):
            raise bad(
                "map_ids/map_layers/map_polygons",
                "equal lengths",
                (len(self.map_ids), len(self.map_layers), len(self.map_polygons)),
            )
        bad_layers = sorted(set(self.map_layers) - set(MAP_LAYERS))
        if bad_layers:
            raise bad("map_layers", f"values in {MAP_LAYERS}", bad_layers)
        self.centerline = np.asarray(self.centerline, dtype=np.float64)
        if self.centerline.ndim != 2 or self.centerline.shape[1] != 3 or len(self.centerline) < 2:
            raise bad("centerline", "(P>=2, 3) poses", self.centerline.shape)
        self.reference_poses = np.asarray(self.reference_poses, dtype=np.float64)
        if self.reference_poses.shape != (NUM_STEPS + 1, 3) or not np.isfinite(self.reference_poses).all():
            raise bad("reference_poses", f"finite ({NUM_STEPS + 1}, 3)", self.reference_poses.shape)
        k = len(self.red_light_ids)
        if len(self.red_light_polygons) != k:
            raise bad("red_light_polygons", f"{k} polygons", len(self.red_light_polygons))
        if self.red_light_active is None:
            self.red_light_active = np.zeros((t, k), dtype=bool)
        self.red_light_active = np.asarray(self.red_light_active, dtype=bool)
        if self.red_light_active.ndim != 2 or self.red_light_active.shape[1] != k:
            raise bad("red_light_active", f"(T, K={k}) bool", self.red_light_active.shape)
        if self.red_light_active.shape[0] < NUM_STEPS + 1:
            raise bad("red_light_active", f"at least {NUM_STEPS + 1} steps", self.red_light_active.shape)
        if self.human_trajectory is not None:
            self.human_trajectory = np.asarray(self.human_trajectory, dtype=np.float64)
            if self.human_trajectory.shape != (8, 3):
                raise bad("human_trajectory", "(8, 3) local poses", self.human_trajectory.shape)
        if self.past_states is not None:
            self.past_states = np.asarray(self.past_states, dtype=np.float64)
            if self.past_states.ndim != 2 or self.past_states.shape[1] != STATE_DIM:
                raise bad("past_states", f"(H, {STATE_DIM})", self.past_states.shape)

    # ---- derived, cached geometry -----------------------------------------------------------
    @property
    def num_agents(self) -> int:
        return len(self.agent_tokens)

    @cached_property
    def agent_is_agent(self) -> np.ndarray:
        """(M,) moving kinds (vehicle / pedestrian / bicycle): hit at fault = 0 rather than 0.5."""
        return np.array([t in AGENT_TYPES for t in self.agent_types], dtype=bool)

    @cached_property
    def first_seen_speed(self) -> np.ndarray:
        """(M,) speed of each track in the first step it exists: nuPlan's is_track_stopped looks
        at the track as first seen."""
        first = self.agent_valid.argmax(axis=0) if self.num_agents else np.zeros(0, dtype=np.int64)
        v = self.agent_velocity[first, np.arange(self.num_agents)]
        return np.hypot(v[:, 0], v[:, 1])

    @cached_property
    def _map(self) -> tuple[PolygonSet, np.ndarray]:
        """All map polygons prepared at once (one GEOS call), and which are on the route."""
        route = set(self.route_lane_ids)
        return PolygonSet(self.map_polygons), np.array([i in route for i in self.map_ids], dtype=bool)

    def _layer_polygons(self, layers: tuple[str, ...], route_only: bool = False) -> PolygonSet:
        polygons, on_route = self._map
        keep = np.array([layer in layers for layer in self.map_layers], dtype=bool)
        return polygons.subset(keep & on_route if route_only else keep)

    @cached_property
    def drivable_set(self) -> PolygonSet:
        return self._layer_polygons(DRIVABLE_AREA_LAYERS)

    @cached_property
    def lane_set(self) -> PolygonSet:
        return self._layer_polygons(LANE_LAYERS)

    @cached_property
    def route_lane_set(self) -> PolygonSet:
        return self._layer_polygons(LANE_LAYERS, route_only=True)

    @cached_property
    def intersection_set(self) -> PolygonSet:
        return self._layer_polygons(("INTERSECTION",))

    @cached_property
    def red_light_set(self) -> PolygonSet:
        return PolygonSet(list(self.red_light_polygons))

    def __getstate__(self):
        # Cached shapely trees are rebuilt lazily after unpickling (e.g. in worker processes).
        return {k: v for k, v in self.__dict__.items() if k in self.__dataclass_fields__}
