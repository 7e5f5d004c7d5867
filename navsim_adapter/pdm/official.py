"""Bridge to the official NAVSIM / nuPlan packages (optional dependency).

`to_metric_cache(ctx)` turns a ScoringContext into the official MetricCache, so the very same
scene can be scored by NAVSIM's own `pdm_score` pipeline (equivalence tests, bench). Imports are
lazy: without the packages every entry point raises one clear ImportError.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.simulation import DT, NUM_STEPS, sample_times_us

INSTALL_HINT = (
    "install them with `make install-navsim` (from the wheel folder the Makefile's WHEELS names) "
    "or `pip install -e '.[navsim]'` where GitHub is reachable"
)


def missing_packages() -> list[str]:
    """Names of the official packages that cannot be imported (empty when all are there)."""
    missing = []
    for mod, name in (
        ("nuplan.planning.simulation.trajectory.trajectory_sampling", "nuplan-devkit"),
        ("navsim.planning.simulation.planner.pdm_planner.scoring.pdm_scorer", "navsim"),
    ):
        try:
            __import__(mod)
        except Exception:  # noqa: BLE001 - any import failure means "not usable"
            missing.append(name)
    return missing


def require_official(what: str = "this feature") -> None:
    missing = missing_packages()
    if missing:
        raise ImportError(
            f"{what} needs the official packages {', '.join(missing)}, which are not importable; {INSTALL_HINT}"
        )


def _ego_state(state: np.ndarray, time_us: int):
    from nuplan.common.actor_state.ego_state import EgoState
    from nuplan.common.actor_state.state_representation import StateSE2, StateVector2D, TimePoint
    from nuplan.common.actor_state.vehicle_parameters import get_pacifica_parameters

    return EgoState.build_from_rear_axle(
        rear_axle_pose=StateSE2(*state[:3]),
        rear_axle_velocity_2d=StateVector2D(state[3], state[4]),
        rear_axle_acceleration_2d=StateVector2D(state[5], state[6]),
        tire_steering_angle=float(state[7]),
        time_point=TimePoint(int(time_us)),
        vehicle_parameters=get_pacifica_parameters(),
        is_in_auto_mode=True,
        angular_vel=float(state[9]),
        angular_accel=float(state[10]),
        tire_steering_rate=float(state[8]),
    )


def _pose_trajectory(poses: np.ndarray, times_us: np.ndarray, template: np.ndarray):
    from nuplan.planning.simulation.trajectory.interpolated_trajectory import InterpolatedTrajectory

    states = []
    for p, t in zip(poses, times_us, strict=True):
        s = template.copy()
        s[:3] = p
        states.append(_ego_state(s, int(t)))
    return InterpolatedTrajectory(states)


def _detections(ctx: ScoringContext, steps: int):
    from nuplan.common.actor_state.agent import Agent
    from nuplan.common.actor_state.oriented_box import OrientedBox
    from nuplan.common.actor_state.scene_object import SceneObjectMetadata
    from nuplan.common.actor_state.state_representation import StateSE2, StateVector2D
    from nuplan.common.actor_state.static_object import StaticObject
    from nuplan.common.actor_state.tracked_objects import TrackedObjects
    from nuplan.common.actor_state.tracked_objects_types import TrackedObjectType
    from nuplan.planning.simulation.observation.observation_type import DetectionsTracks

    out = []
    for t in range(steps):
        objs = []
        for j in np.nonzero(ctx.agent_valid[t])[0]:
            x, y, h, length, width = ctx.agent_boxes[t, j]
            box = OrientedBox(StateSE2(x, y, h), length, width, 1.5)
            kind = TrackedObjectType[ctx.agent_types[j].upper()]
            meta = SceneObjectMetadata(
                ctx.timestamp_us + t * 100_000, ctx.agent_tokens[j], int(j), ctx.agent_tokens[j]
            )
            if ctx.agent_is_agent[j]:
                objs.append(Agent(kind, box, StateVector2D(*ctx.agent_velocity[t, j]), meta))
            else:
                objs.append(StaticObject(kind, box, meta))
        out.append(DetectionsTracks(TrackedObjects(objs)))
    return out


def map_parts(ctx: ScoringContext):
    """(PDMDrivableMap, PDMPath centreline) of `ctx` with the navsim classes importable here (v1.1 or 2.x)."""
    from navsim.planning.simulation.planner.pdm_planner.observation.pdm_occupancy_map import PDMDrivableMap
    from navsim.planning.simulation.planner.pdm_planner.utils.pdm_path import PDMPath
    from nuplan.common.actor_state.state_representation import StateSE2
    from nuplan.common.maps.maps_datatypes import SemanticMapLayer

    drivable = PDMDrivableMap(
        list(ctx.map_ids),
        [SemanticMapLayer[layer] for layer in ctx.map_layers],
        np.array(ctx.map_polygons, dtype=object),
    )
    return drivable, PDMPath([StateSE2(*p) for p in ctx.centerline])


def reference_trajectory(ctx: ScoringContext):
    """PDM-Closed reference stamped exactly at NAVSIM's query times, so sampling returns our poses."""
    t0 = int(ctx.timestamp_us)
    return _pose_trajectory(ctx.reference_poses, t0 + sample_times_us(t0), np.zeros(11))


def to_metric_cache(ctx: ScoringContext):
    """The official NAVSIM v2 MetricCache describing the same scene as `ctx`."""
    require_official("converting a ScoringContext to a NAVSIM MetricCache")
    from navsim.common.dataclasses import Trajectory
    from navsim.common.enums import SceneFrameType
    from navsim.planning.metric_caching.metric_cache import MapParameters, MetricCache
    from navsim.planning.simulation.planner.pdm_planner.observation.pdm_observation import PDMObservation
    from nuplan.common.actor_state.state_representation import TimePoint
    from nuplan.common.maps.maps_datatypes import (
        TrafficLightStatusData,
        TrafficLightStatusType,
    )
    from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling

    steps = NUM_STEPS + 1
    t0 = int(ctx.timestamp_us)
    sampling = TrajectorySampling(num_poses=NUM_STEPS, interval_length=DT)
    ego = _ego_state(ctx.ego_state, t0)

    reference = reference_trajectory(ctx)

    detections = _detections(ctx, steps)
    route_dict = {
        i: SimpleNamespace(polygon=p) for i, p in zip(ctx.red_light_ids, ctx.red_light_polygons, strict=True)
    }
    lights = [
        [
            TrafficLightStatusData(TrafficLightStatusType.RED, lane_id, t0 + t * 100_000)
            for k, lane_id in enumerate(ctx.red_light_ids)
            if ctx.red_light_active[t, k]
        ]
        for t in range(steps)
    ]
    observation = PDMObservation(
        sampling, sampling, 100.0, observation_sample_res=1, extend_observation_for_ttc=False
    )
    observation.update_detections_tracks(detections, lights, route_dict, compute_traffic_light_data=True)

    drivable, centerline = map_parts(ctx)

    past = None
    if ctx.past_states is not None and len(ctx.past_states):
        # NAVSIM samples [start, end) at 0.1 s and drops the last sample: two trailing knots are padding.
        h = len(ctx.past_states)
        times = t0 - (h + 2) * 100_000 + np.arange(h + 2) * 100_000
        padded = np.concatenate([ctx.past_states, ctx.past_states[-1:], ctx.past_states[-1:]])
        from nuplan.planning.simulation.trajectory.interpolated_trajectory import InterpolatedTrajectory

        past = InterpolatedTrajectory([_ego_state(s, int(t)) for s, t in zip(padded, times, strict=True)])

    human = None
    if ctx.human_trajectory is not None:
        human = Trajectory(
            np.asarray(ctx.human_trajectory, dtype=np.float64),
            TrajectorySampling(time_horizon=4, interval_length=0.5),
        )

    return MetricCache(
        file_path=None,
        log_name=ctx.log_name,
        timepoint=TimePoint(t0),
        scene_type=SceneFrameType.SYNTHETIC if ctx.is_synthetic else SceneFrameType.ORIGINAL,
        trajectory=reference,
        human_trajectory=human,
        past_human_trajectory=past,
        ego_state=ego,
        observation=observation,
        centerline=centerline,
        route_lane_ids=list(ctx.route_lane_ids),
        drivable_area_map=drivable,
        past_detections_tracks=[],
        current_tracked_objects=[detections[0]],
        future_tracked_objects=detections[1:],
        map_parameters=MapParameters("", "", ""),
    )


class OfficialScorer:
    """NAVSIM's own pipeline (PDMSimulator + PDMScorer + log-replay traffic), one trajectory per call."""

    def __init__(self, human_filter: bool = True):
        require_official("the official PDM scorer")
        from navsim.planning.simulation.planner.pdm_planner.scoring.pdm_scorer import (
            PDMScorer,
            PDMScorerConfig,
        )
        from navsim.planning.simulation.planner.pdm_planner.simulation.pdm_simulator import PDMSimulator
        from navsim.traffic_agents_policies.log_replay_traffic_agents import LogReplayTrafficAgents
        from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling

        self.sampling = TrajectorySampling(num_poses=NUM_STEPS, interval_length=DT)
        self.simulator = PDMSimulator(self.sampling)
        self.scorer = PDMScorer(self.sampling, PDMScorerConfig(human_penalty_filter=human_filter))
        self.traffic = LogReplayTrafficAgents(self.sampling)

    def score(self, cache, poses: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """Sub-scores (our keys; EPDMS without EC) and simulated states of one (8, 3) trajectory."""
        import warnings

        from navsim.common.dataclasses import Trajectory
        from navsim.evaluate.pdm_score import pdm_score
        from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling

        traj = Trajectory(
            np.asarray(poses, dtype=np.float32), TrajectorySampling(time_horizon=4, interval_length=0.5)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row, states = pdm_score(cache, traj, self.sampling, self.simulator, self.scorer, self.traffic)
        return official_row_to_scores(row), states

    def score_batch(self, cache, poses: np.ndarray) -> dict[str, np.ndarray]:
        """Un-filtered sub-scores of many trajectories in one scorer call (EP normalised per
        candidate against the PDM-Closed row only, as `pdm_score` does)."""
        import warnings

        from navsim.common.dataclasses import Trajectory
        from navsim.evaluate.pdm_score import get_trajectory_as_array, transform_trajectory
        from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling

        ego = cache.ego_state
        rows = [get_trajectory_as_array(cache.trajectory, self.sampling, ego.time_point)]
        for p in poses:
            t = Trajectory(
                np.asarray(p, dtype=np.float32), TrajectorySampling(time_horizon=4, interval_length=0.5)
            )
            rows.append(get_trajectory_as_array(transform_trajectory(t, ego), self.sampling, ego.time_point))
        states = self.simulator.simulate_proposals(np.stack(rows), ego)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dets = self.traffic.simulate_environment(states[1], cache)
            self.scorer.score_proposals(
                states,
                cache.observation,
                cache.centerline,
                cache.route_lane_ids,
                cache.drivable_area_map,
                cache.map_parameters,
                dets,
                cache.past_human_trajectory,
            )
        sc = self.scorer
        from navsim.planning.simulation.planner.pdm_planner.utils.pdm_enums import MultiMetricIndex as MI
        from navsim.planning.simulation.planner.pdm_planner.utils.pdm_enums import WeightedMetricIndex as WI

        multi = sc._multi_metrics.prod(axis=0)
        raw = sc._progress_raw
        norm = np.maximum(raw[0] * multi[0], raw * multi)
        ep = np.where(norm > 5.0, np.clip(raw / np.where(norm > 0, norm, 1.0), 0, 1), 1.0)
        out = {
            "nc": sc._multi_metrics[MI.NO_COLLISION],
            "dac": sc._multi_metrics[MI.DRIVABLE_AREA],
            "ddc": sc._multi_metrics[MI.DRIVING_DIRECTION],
            "tlc": sc._multi_metrics[MI.TRAFFIC_LIGHT_COMPLIANCE],
            "ttc": sc._weighted_metrics[WI.TTC],
            "lk": sc._weighted_metrics[WI.LANE_KEEPING],
            "hc": sc._weighted_metrics[WI.HISTORY_COMFORT],
            "ep": ep,
            "progress": raw,
        }
        out = {k: np.asarray(v, dtype=np.float64)[1:].copy() for k, v in out.items()}
        out["states"] = states[1:]
        return out


def official_row_to_scores(row) -> dict[str, float]:
    """Our keys from one row of NAVSIM's pdm_score DataFrame (EPDMS without EC, as NAVSIM does)."""
    from navsim.planning.simulation.planner.pdm_planner.utils.pdm_enums import WeightedMetricIndex as WI

    r = row.iloc[0]
    weights = np.array(r["weighted_metrics_array"], dtype=np.float64).copy()
    values = np.array(r["weighted_metrics"], dtype=np.float64).copy()
    weights[WI.TWO_FRAME_EXTENDED_COMFORT] = 0.0
    values[WI.TWO_FRAME_EXTENDED_COMFORT] = 0.0
    return {
        "nc": float(r["no_at_fault_collisions"]),
        "dac": float(r["drivable_area_compliance"]),
        "ddc": float(r["driving_direction_compliance"]),
        "tlc": float(r["traffic_light_compliance"]),
        "ep": float(r["ego_progress"]),
        "ttc": float(r["time_to_collision_within_bound"]),
        "lk": float(r["lane_keeping"]),
        "hc": float(r["history_comfort"]),
        "epdms": float(r["multiplicative_metrics_prod"] * (values * weights).sum() / weights.sum()),
    }
