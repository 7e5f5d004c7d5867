"""Hand-built cases with known answers, one or more per metric (metrics on given states)."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_adapter.pdm import metrics as M
from navsim_adapter.pdm.geometry import PACIFICA
from navsim_adapter.pdm.simulation import AX, DT, NUM_STEPS, STATE_DIM
from tests.pdm.toy_road import LANE_W, ROUTE_Y, straight_states

T = NUM_STEPS + 1


def step_profile(before: float, after: float, at: int) -> np.ndarray:
    v = np.full(T, before)
    v[at:] = after
    return v


def test_leaves_road_at_2_3_s(road):
    ctx = road(ego_x=35.0)  # beyond the car park, so the verge is not drivable
    off = straight_states(35.0, speed=10.0, lateral=step_profile(0.0, -3.0, 23))
    stay = straight_states(35.0, speed=10.0, lateral=step_profile(0.0, -0.5, 23))
    g = M.scene_geometry(ctx, np.stack([off, stay]))
    assert g.non_drivable[0].argmax() == 23 and not g.non_drivable[0, :23].any()
    assert not g.non_drivable[1].any()
    np.testing.assert_array_equal(M.drivable_area_compliance(g), [0.0, 1.0])


def test_car_park_counts_as_drivable(road):
    ctx = road(ego_x=5.0, ego_speed=2.0)
    into_park = straight_states(5.0, speed=2.0, lateral=step_profile(0.0, -5.0, 10))
    assert M.subscores(ctx, into_park[None])["dac"][0] == 1.0


def test_rear_end_by_follower_is_not_at_fault(road):
    follower = dict(x=-8.0, y=ROUTE_Y, speed=12.0, token="follower")
    ctx = road(agents=[follower], ego_speed=5.0)
    s = M.subscores(ctx, straight_states(0.0, speed=5.0)[None])
    assert (
        M.scene_geometry(ctx, straight_states(0.0, speed=5.0)[None]).collision_first[0, 0] > 0
    )  # they do touch
    assert s["nc"][0] == 1.0  # hit from behind (ACTIVE_REAR): not at fault


def test_hitting_slower_lead_vehicle_is_at_fault(road):
    lead = dict(x=12.0, y=ROUTE_Y, speed=2.0)
    ctx = road(agents=[lead])
    assert M.subscores(ctx, straight_states(0.0, speed=10.0)[None])["nc"][0] == 0.0


@pytest.mark.parametrize(
    ("kind", "speed", "expected"),
    [("traffic_cone", 0.0, 0.5), ("barrier", 0.0, 0.5), ("vehicle", 0.0, 0.0), ("pedestrian", 0.0, 0.0)],
)
def test_stopped_obstacle_collision_weights(road, kind, speed, expected):
    obstacle = dict(x=20.0, y=ROUTE_Y, speed=speed, length=0.6, width=0.6, type=kind)
    ctx = road(agents=[obstacle])
    assert M.subscores(ctx, straight_states(0.0, speed=10.0)[None])["nc"][0] == expected


def test_stopped_ego_is_never_at_fault(road):
    lead = dict(x=-20.0, y=ROUTE_Y, speed=10.0)  # drives into the standing ego from behind... and through it
    ctx = road(agents=[lead], ego_speed=0.0)
    assert M.subscores(ctx, straight_states(0.0, speed=0.0)[None])["nc"][0] == 1.0


@pytest.mark.parametrize(("rear_gap", "ttc"), [(43.5, 0.0), (44.2, 1.0)])
def test_ttc_violation_only_within_0_9_s(road, rear_gap, ttc):
    # Ego at 10 m/s for 3.2 s then standing: its front reaches 36 m, never the car. At t = 3.1 s the
    # 0.9 s projection reaches 31 + 4.049 + 9 = 44.05 m, the 0.6 s one only 41.05 m (and t = 3.0 s
    # with 0.9 s: 43.05 m), so only the 0.9 s look-ahead can see a car whose rear is at 43.5 m.
    car = dict(x=rear_gap + 2.25, y=ROUTE_Y, speed=0.0)
    ctx = road(agents=[car])
    states = straight_states(0.0, speed=step_profile(10.0, 0.0, 32))
    s = M.subscores(ctx, states[None])
    g = M.scene_geometry(ctx, states[None])
    assert s["nc"][0] == 1.0 and (g.collision_first < 0).all()
    assert s["ttc"][0] == ttc
    if ttc == 0.0:
        n_off = len(M.METRICS.ttc_offsets)
        assert divmod(int(g.ttc_first[0, 0]), n_off) == (31, 3)  # step 31, offset index 3 = 0.9 s


def _ramp_states(jerk: float, start: float = -3.0, n: int = 11) -> np.ndarray:
    st = np.zeros((1, n, STATE_DIM))
    st[0, :, AX] = start + jerk * np.arange(n) * DT
    return st


@pytest.mark.parametrize(("factor", "ok"), [(0.99, 1.0), (1.01, 0.0)])
def test_longitudinal_jerk_just_below_and_above_bound(factor, ok):
    # Savitzky-Golay derivatives are linear in the signal, so the ramp slope that puts the peak
    # estimated jerk exactly on the 4.13 m/s^3 bound is bound / gain of a unit ramp.
    gain = np.abs(M._jerk(_ramp_states(1.0, start=0.0), "x")).max()
    slope = M.MAX_ABS_LON_JERK / gain * factor
    states = _ramp_states(slope, start=-3.9)  # stays negative and inside the acceleration bounds
    assert np.abs(M._jerk(states, "x")).max() == pytest.approx(M.MAX_ABS_LON_JERK * factor, rel=1e-6)
    assert M.comfort(states)[0] == ok


@pytest.mark.parametrize(("accel", "ok"), [(2.39, 1.0), (2.41, 0.0), (-4.04, 1.0), (-4.06, 0.0)])
def test_longitudinal_acceleration_bound(accel, ok):
    assert M.comfort(_ramp_states(0.0, start=accel))[0] == ok


def test_history_comfort_uses_the_logged_past(road):
    ctx = road()
    smooth = straight_states(0.0, speed=10.0)[None]
    assert M.history_comfort(smooth, ctx.past_states)[0] == 1.0
    hard_past = ctx.past_states.copy()
    hard_past[:, AX] = 3.5  # logged launch above the 2.4 m/s^2 bound
    assert M.comfort(smooth)[0] == 1.0 and M.history_comfort(smooth, hard_past)[0] == 0.0


@pytest.mark.parametrize(
    ("progress", "multiplier", "reference", "expected"),
    [
        ((3.0, 4.9), (1.0, 1.0), 4.0, (1.0, 1.0)),  # normaliser under 5 m: EP = 1
        ((3.0, 10.0), (1.0, 1.0), 20.0, (0.15, 0.5)),  # above 5 m: raw / reference
        ((30.0,), (1.0,), 20.0, (1.0,)),  # beyond the reference: normalised by itself
        ((30.0,), (0.0,), 20.0, (1.0,)),  # failing multipliers do not raise the normaliser (v2 clips)
    ],
)
def test_progress_normalisation(progress, multiplier, reference, expected):
    ep = M.normalized_progress(np.array(progress), np.array(multiplier), reference)
    np.testing.assert_allclose(ep, expected)


def test_raw_progress_is_distance_along_centerline(road):
    ctx = road()
    g = M.scene_geometry(ctx, np.stack([straight_states(0.0, speed=v) for v in (0.0, 1.0, 10.0)]))
    np.testing.assert_allclose(g.progress, [0.0, 4.0, 40.0], atol=1e-9)


@pytest.mark.parametrize(
    ("red", "speed", "tlc"),
    [((0, 51), 10.0, 0.0), (None, 10.0, 1.0), ((0, 51), 2.0, 1.0), ((0, 5), 10.0, 1.0)],
)
def test_traffic_light_compliance(road, red, speed, tlc):
    # From x = 40 the front bumper enters the connector (x >= 60) at about 1.6 s at 10 m/s.
    ctx = road(ego_x=40.0, red_steps=red)
    assert M.subscores(ctx, straight_states(40.0, speed=speed)[None])["tlc"][0] == tlc


@pytest.mark.parametrize(("speed", "ddc"), [(1.5, 1.0), (3.0, 0.5), (6.0, 0.0)])
def test_driving_direction_compliance(road, speed, ddc):
    # In the oncoming lane the 1 s window sums 11 step displacements: 1.65 m, 3.3 m, 6.6 m.
    ctx = road()
    states = straight_states(-40.0, LANE_W / 2, speed=speed)
    assert M.subscores(ctx, states[None])["ddc"][0] == ddc


@pytest.mark.parametrize(("offset", "steps", "lk"), [(0.4, 41, 1.0), (0.6, 15, 1.0), (0.6, 25, 0.0)])
def test_lane_keeping(road, offset, steps, lk):
    lateral = np.zeros(T)
    lateral[:steps] = offset
    ctx = road()
    assert M.subscores(ctx, straight_states(-40.0, speed=2.0, lateral=lateral)[None])["lk"][0] == lk


def test_lane_keeping_skips_intersections(road):
    # 1.5 m off the centreline throughout, but mostly inside the intersection (x in [60, 76]).
    ctx = road(ego_x=52.0)
    states = straight_states(52.0, speed=4.0, lateral=np.full(T, 1.0))
    g = M.scene_geometry(ctx, states[None])
    assert g.off_centerline.all() and g.center_in_intersection[0].sum() > 21
    assert M.lane_keeping(g)[0] == 1.0


def test_multiple_lanes_area(road):
    ctx = road()
    straddle = straight_states(-40.0, 0.0, speed=5.0)  # centred on the lane divider
    g = M.scene_geometry(ctx, straddle[None])
    assert g.multiple_lanes.all() and not g.non_drivable.any()


def test_extended_comfort_compares_overlap():
    cur = straight_states(0.0, speed=np.linspace(10, 12, T))[None]
    same_prev = np.concatenate([np.repeat(cur[:, :1], 5, axis=1), cur[:, :-5]], axis=1)
    assert M.extended_comfort(cur, same_prev)[0] == 1.0
    braking_prev = straight_states(0.0, speed=np.linspace(10, 0, T))[None]
    assert M.extended_comfort(cur, braking_prev)[0] == 0.0


def test_footprint_matches_pacifica():
    st = straight_states(0.0, 0.0, speed=0.0)[None]
    from navsim_adapter.pdm.geometry import ego_corners

    corners, center = ego_corners(st[0, :1, :3])
    np.testing.assert_allclose(center[0], [PACIFICA.rear_axle_to_center, 0.0])
    np.testing.assert_allclose(corners[0, 0], [PACIFICA.front_length, PACIFICA.half_width])
    np.testing.assert_allclose(corners[0, 2], [-PACIFICA.rear_length, -PACIFICA.half_width])
