"""The batch API: shapes, aggregates, reference normalisation, human filter, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from navsim_adapter.pdm import SCORER_VERSION, PDMResult, ScoringContext, score
from navsim_adapter.pdm.simulation import interpolate_candidates, simulate
from tests.pdm.toy_road import lane_follow, toy_candidates, toy_context


@pytest.fixture(scope="module")
def batch():
    ctxs = [toy_context(s) for s in range(3)]
    traj = np.stack([toy_candidates(c, 12, s) for s, c in enumerate(ctxs)])
    return ctxs, traj, score(ctxs, traj)


def test_shapes_and_aggregates(batch):
    ctxs, traj, r = batch
    assert isinstance(r, PDMResult) and isinstance(SCORER_VERSION, str)
    for name in PDMResult.SUBSCORES:
        assert getattr(r, name).shape == (3, 12), name
    assert r.simulated_states.shape == (3, 12, 41, 11) and r.valid.all()
    assert np.isnan(r.ec).all()  # no previous frame given
    multi = r.nc * r.dac * r.ddc * r.tlc
    np.testing.assert_allclose(r.epdms, multi * (5 * r.ep + 5 * r.ttc + 2 * r.lk + 2 * r.hc) / 14)
    assert ((r.pdms >= 0) & (r.pdms <= 1)).all() and ((r.epdms >= 0) & (r.epdms <= 1)).all()
    # A scene scored alone gives the same numbers as inside the batch.
    alone = score(ctxs[1:2], traj[1:2])
    for name in PDMResult.SUBSCORES:
        np.testing.assert_array_equal(getattr(alone, name)[0], getattr(r, name)[1], err_msg=name)


def test_extended_comfort_with_previous_states(batch):
    ctxs, traj, r = batch
    prev = r.simulated_states[:, 0]  # [B, 41, 11]: same plan as the "previous frame"
    r2 = score(ctxs, traj, prev_simulated_states=prev)
    assert set(np.unique(r2.ec)) <= {0.0, 1.0}
    multi = r2.nc * r2.dac * r2.ddc * r2.tlc
    np.testing.assert_allclose(
        r2.epdms, multi * (5 * r2.ep + 5 * r2.ttc + 2 * r2.lk + 2 * r2.hc + 2 * r2.ec) / 16
    )
    with pytest.raises(ValueError, match="prev_simulated_states"):
        score(ctxs, traj, prev_simulated_states=prev[:, :10])


def test_progress_normalised_by_reference():
    ctx = toy_context(3, ego_x=0.0, ego_speed=8.0, agents=[], red_steps=None)
    # Reference: the context's PDM-Closed stand-in drives 32 m; candidates drive ~16 m and ~2 m.
    slow = lane_follow(4.0, x0=0.0)
    slow[:, 1] = 0.0
    crawl = lane_follow(0.5, x0=0.0)
    crawl[:, 1] = 0.0
    r = score([ctx], np.stack([slow, crawl])[None], human_filter=False)
    ref_states = simulate(ctx.reference_poses[None], ctx.ego_state[None])
    from navsim_adapter.pdm import metrics as M

    ref_progress = M.scene_geometry(ctx, ref_states).progress[0]
    assert ref_progress > 25
    np.testing.assert_allclose(r.ep[0], r.progress[0] / ref_progress)


def test_human_filter_lifts_metrics_the_human_fails():
    ctx = toy_context(5, ego_x=35.0, ego_speed=8.0, agents=[], red_steps=None)
    human = lane_follow(8.0)
    human[:, 1] = -np.linspace(0.5, 8, 8)  # the logged driver leaves the road
    human[:, 0] -= 35.0
    ctx = dataclasses.replace(ctx, human_trajectory=human)
    off_road = human[None, None]
    filtered = score([ctx], off_road)
    unfiltered = score([ctx], off_road, human_filter=False)
    assert unfiltered.dac[0, 0] == 0.0 and filtered.dac[0, 0] == 1.0
    synthetic = score([dataclasses.replace(ctx, is_synthetic=True)], off_road)
    assert synthetic.dac[0, 0] == 0.0  # v2 applies the filter to original scenes only


def test_bad_trajectories_are_reported(batch):
    ctxs, traj, _ = batch
    bad = traj.copy()
    bad[1, 4, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"scene 1 \(token 'toy000000000001'\), candidate 4"):
        score(ctxs, bad)
    r = score(ctxs, bad, on_invalid="zero")
    assert not r.valid[1, 4] and r.valid.sum() == r.valid.size - 1
    assert r.pdms[1, 4] == 0.0 and r.epdms[1, 4] == 0.0
    with pytest.raises(ValueError, match=r"expected shape \[B=3, N, 8, 3\]"):
        score(ctxs, traj[:, :, :6])


def test_context_validation_names_the_field():
    ctx = toy_context(0, agents=[dict(x=10.0, y=-1.75)])
    with pytest.raises(ValueError, match="toy000000000000.*'reference_poses'"):
        dataclasses.replace(ctx, reference_poses=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="'agent_types'"):
        dataclasses.replace(ctx, agent_types=["spaceship"])
    with pytest.raises(ValueError, match="'map_layers'"):
        dataclasses.replace(ctx, map_layers=["MOON"] * len(ctx.map_ids))


def test_simulation_tracks_simple_references():
    ctx = toy_context(1, ego_speed=0.0, agents=[])
    still = np.zeros((1, 8, 3))
    cruise = lane_follow(10.0, x0=0.0)[None]
    cruise[..., 1] = 0.0
    init = np.zeros(11)
    init[3] = 10.0
    refs = interpolate_candidates(np.concatenate([still, cruise]), np.zeros(3), ctx.timestamp_us)
    states = simulate(refs, np.stack([np.zeros(11), init]))
    np.testing.assert_allclose(states[0, :, :3], 0.0, atol=1e-9)  # standing still stays still
    assert abs(states[1, -1, 0] - 40.0) < 0.5 and np.abs(states[1, :, 1]).max() < 1e-6


def test_context_pickles_without_cached_geometry():
    import pickle

    ctx = toy_context(2)
    _ = ctx.drivable_set  # build a cache
    clone = pickle.loads(pickle.dumps(ctx))
    assert isinstance(clone, ScoringContext) and "drivable_set" not in clone.__dict__
    traj = toy_candidates(ctx, 4, 0)[None]
    np.testing.assert_array_equal(score([clone], traj).epdms, score([ctx], traj).epdms)
