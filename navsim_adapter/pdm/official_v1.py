"""NAVSIM v1.1 metric caches of our scenes, written with navsim 1.1's own classes.

navsim 1.1 scores the v1 leaderboard (PDMS on navtest). Its `MetricCache` holds only the PDM-Closed
trajectory, the ego state, a 5 s observation (10 Hz tracks, no traffic lights), the centreline, the
route lanes and the drivable-area map, and navsim 2.x cannot unpickle it (nor 1.1 a 2.x cache). Run
this where navsim 1.1 is importable, i.e. with its install folder first on the path:

    PYTHONPATH=<navsim-1.1 folder> python -m navsim_adapter.pdm.official_v1 \\
        --data-root D --split S --out CACHE [--frame-interval 1]

then score with navsim 1.1's `run_pdm_score.py ... metric_cache_path=CACHE`.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.official import (
    _detections,
    _ego_state,
    map_parts,
    reference_trajectory,
    require_official,
)

OBSERVATION_STEPS = 50  # navsim 1.1 observes 4 s of proposals + 1 s for TTC, at 10 Hz
MAP_RADIUS = 100.0  # navsim 1.1's MetricCacheProcessor


def v1_metric_cache_class():
    """navsim 1.1's MetricCache; a clear error where a navsim 2.x is what imports."""
    require_official("writing a NAVSIM v1.1 metric cache")
    from navsim.planning.metric_caching.metric_cache import MetricCache

    names = {f.name for f in dataclasses.fields(MetricCache)}
    if "human_trajectory" in names:
        raise ImportError(
            "the importable navsim is 2.x; a v1.1 metric cache needs navsim 1.1 first on the path "
            "(pip install --no-deps --target DIR navsim-1.1.0-py3-none-any.whl; PYTHONPATH=DIR python -m ...)"
        )
    return MetricCache


def to_metric_cache_v1(ctx: ScoringContext, file_path: Path):
    """navsim 1.1's MetricCache describing the same scene as `ctx` (5 s of tracks, as its processor keeps)."""
    from navsim.planning.simulation.planner.pdm_planner.observation.pdm_observation import PDMObservation
    from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling

    metric_cache = v1_metric_cache_class()
    steps = OBSERVATION_STEPS + 1
    if ctx.agent_boxes.shape[0] < steps:
        raise ValueError(
            f"scene {ctx.token}: {ctx.agent_boxes.shape[0]} track steps, navsim 1.1 observes {steps} (5 s)"
        )
    observation = PDMObservation(
        TrajectorySampling(num_poses=OBSERVATION_STEPS, interval_length=0.1),
        TrajectorySampling(num_poses=40, interval_length=0.1),
        MAP_RADIUS,
        observation_sample_res=1,
    )
    observation.update_detections_tracks(_detections(ctx, steps))
    drivable, centerline = map_parts(ctx)
    return metric_cache(
        file_path=file_path,
        trajectory=reference_trajectory(ctx),
        ego_state=_ego_state(ctx.ego_state, int(ctx.timestamp_us)),
        observation=observation,
        centerline=centerline,
        route_lane_ids=list(ctx.route_lane_ids),
        drivable_area_map=drivable,
    )


def write_split_cache_v1(data_root: str | Path, split: str, out: str | Path, frame_interval: int = 1) -> Path:
    """A navsim 1.1 metric cache (its layout: `<out>/<log>/unknown/<token>/metric_cache.pkl` + metadata csv)."""
    from navsim_adapter.pdm import build_context
    from navsim_adapter.pdm.metric_cache import dump_metric_cache
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    loader = SceneLoader(split, data_root=data_root, scene_filter=SceneFilter(frame_interval=frame_interval))
    for scene in loader.iter_scenes():
        cache = to_metric_cache_v1(build_context(scene), Path())
        dump_metric_cache(cache, out, scene.token, scene.metadata.log_name)
    return Path(out)


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(
        prog="python -m navsim_adapter.pdm.official_v1", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--frame-interval", type=int, default=1)
    a = p.parse_args(argv)
    return write_split_cache_v1(a.data_root, a.split, a.out, a.frame_interval)


if __name__ == "__main__":
    main()
