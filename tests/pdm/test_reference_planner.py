"""The PDM-Closed-style reference planner: IDM proposals scored by our own scorer."""

from __future__ import annotations

from navsim_adapter.pdm import metrics as M
from navsim_adapter.pdm.reference_planner import idm_proposals, plan_reference
from navsim_adapter.pdm.simulation import simulate
from tests.pdm.toy_road import ROUTE_Y


def _simulated(ctx, poses):
    return simulate(poses[None], ctx.ego_state[None])


def test_free_road_drives_at_the_speed_limit(road):
    ctx = road(ego_speed=10.0)
    proposals = idm_proposals(ctx, speed_limit=15.0)
    assert proposals.shape == (15, 41, 3)
    ref = plan_reference(ctx, speed_limit=15.0)
    travelled = ref[-1, 0] - ref[0, 0]
    assert 40.0 < travelled < 60.0  # 10 m/s accelerating gently towards 15 m/s over 4 s
    assert abs(ref[-1, 1] - ROUTE_Y) < 1e-6  # the centred proposal wins on a free road


def test_stops_behind_a_stopped_car(road):
    ctx = road(agents=[dict(x=30.0, y=ROUTE_Y, speed=0.0)], ego_speed=10.0)
    ref = plan_reference(ctx, speed_limit=15.0)
    s = M.subscores(ctx, _simulated(ctx, ref))
    assert s["nc"][0] == 1.0 and ref[-1, 0] + 4.049 < 30.0 - 2.25


def test_stops_at_a_red_light(road):
    ctx = road(ego_x=30.0, ego_speed=8.0, red_steps=(0, 51))
    ref = plan_reference(ctx, speed_limit=15.0)
    s = M.subscores(ctx, _simulated(ctx, ref))
    assert s["tlc"][0] == 1.0 and s["progress"][0] > 5.0
    green = plan_reference(road(ego_x=30.0, ego_speed=8.0), speed_limit=15.0)
    assert green[-1, 0] > ref[-1, 0] + 5.0


def test_empty_scene_without_agents_or_lights(road):
    import dataclasses

    ctx = dataclasses.replace(
        road(ego_speed=5.0), red_light_ids=[], red_light_polygons=[], red_light_active=None
    )
    assert ctx.num_agents == 0 and ctx.red_light_active.shape[1] == 0
    ref = plan_reference(ctx, speed_limit=10.0)
    assert ref.shape == (41, 3) and ref[-1, 0] - ref[0, 0] > 20.0
