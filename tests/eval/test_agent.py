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
        m for m in sys.modules if m == "navsim" or m.startswith(("navsim.", "navsim_adapter.agent"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "navsim", None)  # makes `import navsim...` fail
    with pytest.raises(ImportError, match=r"make install-navsim|vla-dipole\[navsim\]"):
        importlib.import_module("navsim_adapter.agent")
    monkeypatch.delitem(sys.modules, "navsim_adapter.agent", raising=False)


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

    with initialize_config_module(config_module="navsim_adapter.config", version_base=None):
        cfg = compose(overrides=["+agent=dipole_agent", f"agent.checkpoint_path={checkpoint}", *overrides])
    return instantiate(cfg.agent)


def navsim_agent_input(root, split, token, agent, AgentInput):
    """navsim's own AgentInput for `token` from our log pickle (4 history frames, current = token)."""
    loader = SceneLoader(split, data_root=root, scene_filter=SceneFilter(frame_interval=1))
    scene = loader.get_scene(token)
    with (root / "navsim_logs" / split / f"{scene.metadata.log_name}.pkl").open("rb") as f:
        frames = pickle.load(f)
    i = next(k for k, fr in enumerate(frames) if fr["token"] == token)
    for fr in frames:  # navsim's Cameras.from_camera_dict expects all 8 cams keys; ours has CAM_F0 only
        fr["cams"] = {cam: fr["cams"].get(cam, fr["cams"]["CAM_F0"]) for cam in NAVSIM_CAMS}
    return AgentInput.from_scene_dict_list(
        frames[i - 3 : i + 1], root / "sensor_blobs" / split, 4, agent.get_sensor_config()
    ), scene


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
def test_compute_trajectory_on_navsim_agent_input_matches_our_observation_path(
    navsim, tiny_bc_policy, synthetic_root
):
    from navsim_adapter.agent import NOISE_KEY
    from navsim_adapter.observation import PolicyRunner, scene_observation

    _, AgentInput, Trajectory = navsim
    agent = compose_agent(tiny_bc_policy, "agent.omega=1.0", "agent.num_steps=2")
    agent.initialize()
    token = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1)).tokens[
        3
    ]
    agent_input, scene = navsim_agent_input(synthetic_root, "test", token, agent, AgentInput)
    traj = agent.compute_trajectory(agent_input)
    assert isinstance(traj, Trajectory)
    assert traj.poses.shape == (8, 3) and traj.poses.dtype == np.float32 and np.isfinite(traj.poses).all()
    assert np.array_equal(agent.compute_trajectory(agent_input).poses, traj.poses)  # deterministic

    runner = PolicyRunner(tiny_bc_policy, num_steps=2)
    ours = runner.sample([scene_observation(scene, runner.spec)], [1.0], tokens=[NOISE_KEY])[0, 0]
    np.testing.assert_allclose(traj.poses, ours, atol=1e-4)


@pytest.mark.navsim
def test_best_of_uses_non_privileged_consensus(navsim, tiny_bc_policy, synthetic_root):
    _, AgentInput, _ = navsim
    agent = compose_agent(tiny_bc_policy, "agent.best_of=4", "agent.num_steps=2")
    token = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1)).tokens[
        0
    ]
    agent_input, _ = navsim_agent_input(synthetic_root, "test", token, agent, AgentInput)
    assert agent.requires_scene is False
    assert agent.compute_trajectory(agent_input).poses.shape == (8, 3)
