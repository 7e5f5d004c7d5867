"""build_context on the synthetic world: what NAVSIM's metric cache would extract, and sane scores."""

from __future__ import annotations

import numpy as np
import pytest

from navsim_adapter.baselines import constant_velocity
from navsim_adapter.evaluation.score import agent_trajectory
from navsim_adapter.geometry import local_to_global
from navsim_adapter.pdm import build_context, score
from navsim_adapter.pdm.context import AGENT_STEPS
from navsim_adapter.pdm.scene_context import past_states


@pytest.fixture(scope="module")
def contexts(pdm_scenes):
    return [build_context(s) for s in pdm_scenes]


def test_context_contents(pdm_scenes, contexts):
    for scene, ctx in zip(pdm_scenes, contexts, strict=True):
        cur = scene.current_frame
        assert ctx.token == scene.token and ctx.timestamp_us == cur.timestamp
        np.testing.assert_allclose(ctx.ego_state[:3], cur.ego_status.ego_pose)
        np.testing.assert_allclose(ctx.human_trajectory, scene.get_future_trajectory(8))
        assert ctx.agent_boxes.shape[0] == AGENT_STEPS and set(ctx.route_lane_ids)
        assert {"ROADBLOCK", "LANE"} <= set(ctx.map_layers)
        # The centreline passes near the ego and the reference starts at the ego pose.
        assert np.hypot(*(ctx.centerline[:, :2] - ctx.ego_state[:2]).T).min() < 3.0
        np.testing.assert_allclose(ctx.reference_poses[0], ctx.ego_state[:3], atol=1e-9)


def test_agents_match_annotations_at_frame_times(pdm_scenes, contexts):
    checked = 0
    for scene, ctx in zip(pdm_scenes, contexts, strict=True):
        c = scene.metadata.num_history_frames - 1
        for k in range(0, 9):  # 2 Hz frames 0 .. 4 s are 10 Hz steps 0, 5, .., 40
            frame = scene.frames[c + k]
            ann = frame.annotations
            for j, tok in enumerate(ann.track_tokens):
                m = ctx.agent_tokens.index(tok)
                b = ann.boxes[j]
                glob = local_to_global(np.array([[b[0], b[1], b[6]]]), frame.ego_status.ego_pose)[0]
                assert ctx.agent_valid[5 * k, m]
                np.testing.assert_allclose(ctx.agent_boxes[5 * k, m, :2], glob[:2], atol=1e-6)
                checked += 1
    assert checked > 50


def test_past_states_sample_the_history(pdm_scenes):
    scene = pdm_scenes[0]
    past = past_states(scene)
    h = scene.metadata.num_history_frames
    span_s = (scene.frames[h - 2].timestamp - scene.frames[0].timestamp) * 1e-6
    assert len(past) == round(span_s / 0.1) - 1  # [start, end) at 0.1 s, last sample dropped
    np.testing.assert_allclose(past[0, :3], scene.frames[0].ego_status.ego_pose, atol=1e-9)


def test_human_beats_constant_velocity(contexts):
    human = score(contexts, np.stack([agent_trajectory(c, "human") for c in contexts]))
    cv = score(contexts, np.stack([agent_trajectory(c, "constant_velocity") for c in contexts]))
    assert human.epdms.mean() > 0.8 and human.dac.mean() == 1.0
    assert human.epdms.mean() > cv.epdms.mean()


def test_constant_velocity_is_one_rollout_from_scene_or_context(pdm_scenes, contexts):
    """The score CLI (from a ScoringContext) and the evaluator (from the Scene) drive NAVSIM's CV agent alike."""
    for scene, ctx in zip(pdm_scenes, contexts, strict=True):
        plan = constant_velocity(scene)
        assert plan[-1, 0] > 1.0, scene.token  # the scenes move
        np.testing.assert_array_equal(
            agent_trajectory(ctx, "constant_velocity")[0], plan, err_msg=scene.token
        )


def test_unroutable_scene_is_reported(pdm_scenes):
    import dataclasses

    scene = pdm_scenes[0]
    h = scene.metadata.num_history_frames
    frames = list(scene.frames)
    frames[h - 1] = dataclasses.replace(frames[h - 1], roadblock_ids=["no_such_roadblock"])
    broken = dataclasses.replace(scene, frames=frames)
    with pytest.raises(ValueError, match=rf"scene {scene.token} .*no_such_roadblock.*no on-route lanes"):
        build_context(broken)
