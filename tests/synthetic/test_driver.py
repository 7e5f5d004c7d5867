"""The logged driver and the other agents: clean driving is safe and lawful; each flaw shows up."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon

from data_prep.world.agents import Vehicle
from data_prep.world.driver import (
    EGO_LENGTH,
    EGO_WIDTH,
    REAR_AXLE_TO_CENTER,
    REAR_AXLE_TO_FRONT,
    DriverStyle,
    EgoDriver,
    sample_style,
)
from data_prep.world.render import box_corners_3d
from data_prep.world.scenarios import FAMILIES, build_scenario
from data_prep.world.simulate import simulate

FRAMES = 36


def run(family: str, seed: int, style: DriverStyle | None = None, noise: float = 0.0):
    rng = np.random.default_rng([seed, FAMILIES.index(family), 99])
    sc = build_scenario(family, rng, duration=FRAMES * 0.5)
    style = style if style is not None else sample_style(rng, noise)
    frames = simulate(sc, EgoDriver(sc.plan, sc.ego, style, rng), FRAMES)
    return sc, frames


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """Footprints (N, 4, 2) of boxes (N, 7)."""
    return box_corners_3d(np.asarray(boxes))[:, :4, :2]


def ego_polygon(ego: np.ndarray) -> Polygon:
    centre = ego[:2] + REAR_AXLE_TO_CENTER * np.array([np.cos(ego[2]), np.sin(ego[2])])
    return Polygon(box_corners(np.array([[*centre, 0, EGO_LENGTH, EGO_WIDTH, 1, ego[2]]]))[0])


def min_clearance(frames, tracks: set[str] | None = None) -> float:
    """Smallest gap between the ego's footprint and any (or the given tracks') box over the log."""
    out = np.inf
    for f in frames:
        ego = ego_polygon(f.ego)
        for corners, track in zip(box_corners(f.boxes), f.tracks, strict=True):
            if tracks is None or track in tracks:
                out = min(out, ego.distance(Polygon(corners)))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_clean_driver_never_collides_and_keeps_its_lane(family):
    for seed in (0, 1):
        sc, frames = run(family, seed)
        assert min_clearance(frames) > 0.2, (family, seed)
        ego = np.array([f.ego for f in frames])
        lateral = np.min([np.abs(p.project(ego[:, :2])[1]) for p in sc.plan.paths], axis=0)
        changing = family == "stopped_obstacle" and len(sc.plan.paths) > 1
        assert lateral.max() < (3.0 if changing else 0.6), (family, seed, lateral.max())
        assert np.all(ego[:, 3] >= 0) and np.all(ego[:, 3] <= sc.plan.speed_limit * 1.05)


def test_clean_driver_stops_at_red_and_goes_on_green():
    sc, frames = run("red_light", 0)
    ((s_stop, connector),) = sc.plan.stops
    path = sc.plan.paths[0]
    for f in frames:
        s_front = path.project(f.ego[None, :2])[0][0] + REAR_AXLE_TO_FRONT
        if dict(f.lights)[connector]:
            assert s_front < s_stop + 0.5, f.t
    assert path.project(frames[-1].ego[None, :2])[0][0] > s_stop, "drove on after the light turned green"
    assert min(f.ego[3] for f in frames if dict(f.lights)[connector]) < 1.0  # (nearly) stopped while red


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_turn_follows_the_driving_command(seed):
    sc, frames = run("intersection_turn", seed)
    turn = sc.info["turn"]
    commands = [f.command for f in frames]
    turned = np.angle(np.exp(1j * (frames[-1].ego[2] - frames[0].ego[2])))
    expected = {"left": np.pi / 2, "straight": 0.0, "right": -np.pi / 2}[turn]
    assert abs(turned - expected) < 0.2, (turn, turned)
    if turn != "straight":
        first = commands.index(turn)
        assert first > 0 and set(commands[:first]) == {"straight"}  # announced ahead of the junction
    assert set(commands) <= {"straight", turn}


def test_stopped_obstacle_is_passed_by_a_lane_change_or_waited_for():
    for seed in range(6):
        sc, frames = run("stopped_obstacle", seed)
        ego = np.array([f.ego for f in frames])
        s_obs = sc.info["obstacle_s"]
        progressed = (
            sc.plan.paths[0].project(ego[-1:, :2])[0][0] - sc.plan.paths[0].project(ego[:1, :2])[0][0]
        )
        if len(sc.plan.paths) > 1:
            assert progressed > s_obs + 10, seed  # overtook
        else:
            assert progressed < s_obs and ego[-1, 3] < 0.2, seed  # stopped behind it


def test_flaws_show_up_in_the_logged_driving():
    clean_sc, clean = run("lane_follow_straight", 5, DriverStyle())
    weave_sc, weave = run("lane_follow_straight", 5, DriverStyle(weave=1.0))

    def lateral(sc, frames):
        return np.abs(sc.plan.paths[0].project(np.array([f.ego[:2] for f in frames]))[1]).max()

    assert lateral(weave_sc, weave) > lateral(clean_sc, clean) + 0.4

    sc, clean_lead = run("lead_vehicle_braking", 2, DriverStyle())
    _, late = run("lead_vehicle_braking", 2, DriverStyle(late_brake=1.0))
    lead = {a.track for a in sc.agents if isinstance(a, Vehicle) and a.brake_at is not None}
    assert min(f.ego[4] for f in late) < min(f.ego[4] for f in clean_lead) - 0.5
    assert min_clearance(late, lead) < min_clearance(clean_lead, lead) - 1.0

    _, harsh = run("pedestrian_crossing", 0, DriverStyle(harsh=1.0))
    _, calm = run("pedestrian_crossing", 0, DriverStyle())
    assert max(f.ego[4] for f in harsh) > 2.4 > max(f.ego[4] for f in calm)  # nuPlan's comfort bound

    _, slow = run("lane_follow_curve", 3, DriverStyle(hesitation=1.0, noise=1.0))
    _, fast = run("lane_follow_curve", 3, DriverStyle(noise=1.0))
    assert np.linalg.norm(slow[-1].ego[:2] - slow[0].ego[:2]) < np.linalg.norm(
        fast[-1].ego[:2] - fast[0].ego[:2]
    )


def test_driver_noise_zero_is_clean_and_styles_are_seeded():
    assert sample_style(np.random.default_rng(0), 0.0) == DriverStyle()
    styles = [sample_style(np.random.default_rng(s), 1.0) for s in range(40)]
    assert sample_style(np.random.default_rng(3), 1.0) == styles[3]
    for flaw in ("late_brake", "hesitation", "weave", "harsh"):
        share = np.mean([getattr(s, flaw) > 0 for s in styles])
        assert 0.15 < share < 0.7, flaw


def test_idm_vehicles_queue_without_collisions_and_wait_at_red():
    sc, frames = run("intersection_turn", 0)
    cross = [
        a
        for a in sc.agents
        if isinstance(a, Vehicle) and a.stops and sc.net.light_group(a.stops[0].connector_id) == "EW"
    ]
    assert cross
    for a in cross:  # EW is red all along in this family
        assert a.s + a.size[0] / 2 <= a.stops[0].s + 0.5
    for f in frames:
        polys = [Polygon(c) for c in box_corners(f.boxes)]
        for i in range(len(polys)):
            for j in range(i + 1, len(polys)):
                assert not polys[i].intersects(polys[j]), (f.t, f.tracks[i], f.tracks[j])
