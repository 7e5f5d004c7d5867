"""DipoleAgent inside the official navsim: hydra instantiation from the shipped YAML, AgentInput built by
navsim from our synthetic logs, and the same plan as our evaluator's observation path."""

from __future__ import annotations

import importlib
import pickle
import sys

import numpy as np
import pytest

from navsim_adapter.scene_loader import SceneFilter, SceneLoader

NAVSIM_CAMS = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")


def test_import_without_navsim_names_the_extra(monkeypatch):
    for name in [
        m
        for m in sys.modules
        if m == "navsim" or m.startswith(("navsim.", "navsim_adapter.evaluation.agent"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "navsim", None)  # makes `import navsim...` fail
    with pytest.raises(ImportError, match=r"make install-navsim|vla-dipole\[navsim\]"):
        importlib.import_module("navsim_adapter.evaluation.agent")
    monkeypatch.delitem(sys.modules, "navsim_adapter.evaluation.agent", raising=False)


@pytest.fixture(scope="module")
def navsim():
    pytest.importorskip(
        "navsim.agents.abstract_agent", reason="official navsim not installed (make install-navsim)"
    )
    pytest.importorskip(
        "nuplan.planning.simulation.trajectory.trajectory_sampling", reason="nuplan-devkit missing"
    )
    from navsim.agents.abstract_agent import AbstractAgent
    from navsim.common.dataclasses import AgentInput, Trajectory

    return AbstractAgent, AgentInput, Trajectory


def compose_agent(checkpoint, *overrides):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module(config_module="navsim_adapter.evaluation.config", version_base=None):
        cfg = compose(overrides=["+agent=dipole_agent", f"agent.checkpoint_path={checkpoint}", *overrides])
    return instantiate(cfg.agent)


def navsim_agent_input(root, split, token, sensor_config, AgentInput):
    """navsim's own AgentInput for `token` from our log pickle (4 history frames, current = token)."""
    with (root / "navsim_logs" / split / f"{token_log(root, split, token)}.pkl").open("rb") as f:
        frames = pickle.load(f)
    i = next(k for k, fr in enumerate(frames) if fr["token"] == token)
    for fr in frames:  # navsim's Cameras.from_camera_dict expects all 8 cams keys; ours has CAM_F0 only
        fr["cams"] = {cam: fr["cams"].get(cam, fr["cams"]["CAM_F0"]) for cam in NAVSIM_CAMS}
    return AgentInput.from_scene_dict_list(
        frames[i - 3 : i + 1], root / "sensor_blobs" / split, 4, sensor_config
    )


def token_log(root, split, token) -> str:
    loader = SceneLoader(split, data_root=root, scene_filter=SceneFilter(frame_interval=1))
    return loader.get_scene(token).metadata.log_name


@pytest.mark.navsim
def test_hydra_yaml_instantiates_a_navsim_agent(navsim, tiny_bc_policy):
    AbstractAgent, _, _ = navsim
    agent = compose_agent(tiny_bc_policy, "agent.omega=0.5", "agent.num_steps=2")
    assert isinstance(agent, AbstractAgent)
    assert agent.name() == "dipole_agent" and agent.requires_scene is False
    assert agent.omega == 0.5 and agent.num_steps == 2
    assert agent._trajectory_sampling.num_poses == 8 and agent._trajectory_sampling.interval_length == 0.5
    sensors = agent.get_sensor_config()
    assert sensors.cam_f0 == [3] and sensors.cam_l0 is False and sensors.lidar_pc is False


@pytest.mark.navsim
def test_missing_checkpoint_path_is_a_clear_error(navsim):
    from hydra.errors import InstantiationException

    with pytest.raises((InstantiationException, ValueError), match="checkpoint_path"):
        compose_agent("null")


@pytest.mark.navsim
def test_navsim_agent_input_gives_our_observation_bit_for_bit(navsim, synthetic_root):
    """One conversion: 4 history frames of navsim's AgentInput and of our scene give identical arrays."""
    from navsim.common.dataclasses import SensorConfig

    from vla_dipole.data.observation import ObservationSpec, agent_input_observation, scene_observation

    _, AgentInput, _ = navsim
    spec = ObservationSpec(cameras=("cam_f0",), image_size=(64, 36), history_frames=4)
    sensors = SensorConfig(**{c.lower(): c == "CAM_F0" and [0, 1, 2, 3] for c in NAVSIM_CAMS}, lidar_pc=False)
    loader = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1))
    for token in (loader.tokens[0], loader.tokens[-1]):
        theirs = agent_input_observation(
            navsim_agent_input(synthetic_root, "test", token, sensors, AgentInput), spec
        )
        ours = scene_observation(loader.get_scene(token), spec)
        assert set(theirs) < set(ours)
        for key, value in theirs.items():
            assert value.dtype == ours[key].dtype and np.array_equal(value, ours[key]), (token, key)
        assert np.abs(ours["ego_pose"][:3]).max() > 1.0  # real history poses, not all zeros


@pytest.mark.navsim
def test_agent_inside_navsim_returns_the_evaluators_trajectory_bit_for_bit(
    navsim, tiny_bc_policy, synthetic_root, tmp_path, one_thread
):
    """What navsim's run_pdm_score gets from DipoleAgent (one token at a time) is what the evaluator
    samples for the same token in its batches, for the policy and for constant velocity."""
    from navsim.agents.constant_velocity_agent import ConstantVelocityAgent
    from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling

    from navsim_adapter.evaluation.evaluate import EvalSettings, Evaluator
    from navsim_adapter.evaluation.report import omega_row
    from vla_dipole.data.observation import scene_observation

    _, AgentInput, Trajectory = navsim
    agent = compose_agent(tiny_bc_policy, "agent.omega=1.0", "agent.num_steps=2")
    agent.initialize()
    cv = ConstantVelocityAgent(TrajectorySampling(time_horizon=4, interval_length=0.5))
    settings = EvalSettings(
        data_root=synthetic_root,
        split="test",
        out=tmp_path,
        checkpoint=tiny_bc_policy,
        omegas=(0.0, 1.0),
        steps=2,
        frame_interval=1,
    )
    ev = Evaluator(settings)
    tokens = ev.loader.tokens[2:6]
    scenes = [ev.loader.get_scene(t) for t in tokens]
    obs = [{spec: scene_observation(s, spec) for spec in ev.specs} for s in scenes]
    ours = ev._trajectories(scenes, [None] * len(scenes), obs)  # one batch of 4 scenes
    column = ev.rows.index(omega_row("dipole", 1.0))
    for i, token in enumerate(tokens):
        agent_input = navsim_agent_input(synthetic_root, "test", token, agent.get_sensor_config(), AgentInput)
        traj = agent.compute_trajectory(agent_input)
        assert isinstance(traj, Trajectory) and traj.poses.dtype == np.float32
        assert np.array_equal(traj.poses, ours[i, column].astype(np.float32)), token
        assert np.array_equal(cv.compute_trajectory(agent_input).poses, ours[i, 0].astype(np.float32))
    assert len({ours[i, column].tobytes() for i in range(len(tokens))}) == len(tokens)  # noise per scene


@pytest.mark.navsim
def test_best_of_uses_non_privileged_consensus(navsim, tiny_bc_policy, synthetic_root):
    _, AgentInput, _ = navsim
    agent = compose_agent(tiny_bc_policy, "agent.best_of=4", "agent.num_steps=2")
    token = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1)).tokens[
        0
    ]
    agent_input = navsim_agent_input(synthetic_root, "test", token, agent.get_sensor_config(), AgentInput)
    assert agent.requires_scene is False
    assert agent.compute_trajectory(agent_input).poses.shape == (8, 3)


@pytest.mark.navsim
def test_best_of_by_log_ratio_matches_the_runner(navsim, tiny_bc_policy, synthetic_root):
    """`agent.selection=log_ratio` picks what the evaluator's `--selection log_ratio` picks."""
    from vla_dipole.data.observation import agent_input_observation
    from vla_dipole.inference import PolicyRunner, consensus_scores
    from vla_dipole.model.policy import LOG_RATIO

    _, AgentInput, _ = navsim
    agent = compose_agent(tiny_bc_policy, "agent.best_of=4", "agent.num_steps=2", "agent.selection=log_ratio")
    loader = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1))
    runner = PolicyRunner.from_checkpoint(tiny_bc_policy, num_steps=2)
    differs = []
    for token in loader.tokens[:4]:
        agent_input = navsim_agent_input(synthetic_root, "test", token, agent.get_sensor_config(), AgentInput)
        obs = agent_input_observation(agent_input, agent.spec)
        ours = runner.sample([obs], [agent.omega], best_of=4, score_fn=LOG_RATIO)[0, 0]
        consensus = runner.sample([obs], [agent.omega], best_of=4, score_fn=consensus_scores)[0, 0]
        assert np.array_equal(agent.compute_trajectory(agent_input).poses, ours.astype(np.float32))
        differs.append(not np.array_equal(ours, consensus))
    assert any(differs)  # the selection is applied: not the consensus pick on every scene
    with pytest.raises(Exception, match="selection='oracle'"):  # hydra wraps the agent's ValueError
        compose_agent(tiny_bc_policy, "agent.best_of=4", "agent.selection=oracle")
