"""Stage losses on real tensors: DIPOLE's complementary weights, AWR clipping, BC, per-sample noise."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vla_dipole.data.shard_format import SCORE_NAMES
from vla_dipole.training.config import config_root
from vla_dipole.training.objective import sample_noise
from vla_dipole.training.stages import stage_loss


def _cfg(**dipole):
    cfg = OmegaConf.load(config_root() / "train" / "base.yaml")
    cfg.dipole.update(dipole)
    return cfg


def _batch(rewards: torch.Tensor) -> dict:
    scores = rewards[..., None].repeat(1, 1, len(SCORE_NAMES))
    return {"candidate_scores": scores}


def test_dipole_weights_follow_group_advantage() -> None:
    rewards = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.2, 0.8]])
    err_pos = torch.ones(2, 3, requires_grad=True)
    err_neg = torch.full((2, 3), 2.0, requires_grad=True)
    errors = {
        "cand_pos": err_pos,
        "cand_neg": err_neg,
        "human_pos": torch.zeros(2),
        "human_neg": torch.zeros(2),
    }
    loss, stats, hists = stage_loss("dipole", _cfg(beta=2.0, k=0.0), errors, _batch(rewards))
    loss.backward()
    # group-standardised advantage per scene, w+ = sigmoid(2 A), w- = 1 - w+
    adv = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, unbiased=False, keepdim=True) + 1e-6)
    w_pos = torch.sigmoid(2.0 * adv)
    torch.testing.assert_close(err_pos.grad, w_pos / 6)
    torch.testing.assert_close(err_neg.grad, (1 - w_pos) / 6)
    torch.testing.assert_close(hists["w_pos"], w_pos.reshape(-1))
    assert stats["loss"] == pytest.approx(float((w_pos * 1 + (1 - w_pos) * 2).mean()), rel=1e-5)
    assert stats["reward_max"] == pytest.approx(0.9)


def test_bc_anchor_and_epdms_advantage() -> None:
    rewards = torch.tensor([[0.0, 1.0]])
    batch = _batch(rewards)
    batch["candidate_scores"][..., SCORE_NAMES.index("epdms")] = torch.tensor(
        [[1.0, 0.0]]
    )  # opposite ranking
    human = torch.tensor([0.5], requires_grad=True)
    errors = {
        "cand_pos": torch.ones(1, 2),
        "cand_neg": torch.ones(1, 2),
        "human_pos": human,
        "human_neg": human,
    }
    _, _, h_pdms = stage_loss("dipole", _cfg(beta=1.0), errors, batch)
    _, stats, h_epdms = stage_loss("dipole", _cfg(beta=1.0, advantage="epdms", bc_anchor=0.5), errors, batch)
    assert h_pdms["w_pos"][1] > 0.5 > h_pdms["w_pos"][0]
    assert h_epdms["w_pos"][0] > 0.5 > h_epdms["w_pos"][1]
    assert stats["loss_bc_anchor"] == pytest.approx(1.0)


def test_awr_weights_are_clipped_and_bc_is_plain_mse() -> None:
    cfg = _cfg(advantage="baseline", baseline=0.0)
    cfg.awr.beta, cfg.awr.clip = 10.0, 5.0
    rewards = torch.tensor([[0.0, 1.0, 2.0]])
    err = torch.ones(1, 3, requires_grad=True)
    loss, stats, hists = stage_loss("awr", cfg, {"cand_pos": err}, _batch(rewards))
    torch.testing.assert_close(hists["w_awr"], torch.tensor([1.0, 5.0, 5.0]))
    loss.backward()
    torch.testing.assert_close(err.grad, torch.tensor([[1.0, 5.0, 5.0]]) / 3)
    bc, _, _ = stage_loss("bc", cfg, {"human_pos": torch.tensor([1.0, 3.0])}, {})
    assert float(bc) == pytest.approx(2.0)


def test_noise_depends_only_on_position() -> None:
    a = sample_noise(np.array([4, 5, 6, 7]), (8, 4), 3, 100, seed=0, round_=0)
    b = sample_noise(np.array([6, 7]), (8, 4), 3, 100, seed=0, round_=0)
    torch.testing.assert_close(a.candidates[2:], b.candidates)
    torch.testing.assert_close(a.human_t[2:], b.human_t)
    assert not torch.equal(a.human[0], a.human[1])
    c = sample_noise(np.array([6, 7]), (8, 4), 3, 100, seed=0, round_=1)
    assert not torch.equal(b.human, c.human)


def test_advantage_std_floor_comes_from_the_config() -> None:
    rewards = torch.tensor([[0.900, 0.901, 0.902]])  # a near-tie: std 0.0008 PDMS
    errors = {k: torch.ones(1, 3) for k in ("cand_pos", "cand_neg")} | {
        k: torch.zeros(1) for k in ("human_pos", "human_neg")
    }
    w = {}
    for floor in (0.0, 0.01):
        _, _, hists = stage_loss("dipole", _cfg(beta=4.0, adv_std_floor=floor), errors, _batch(rewards))
        w[floor] = hists["w_pos"]
    assert w[0.0].max() > 0.99 and w[0.0].min() < 0.01  # blown up to +-1.2 standard deviations
    assert (w[0.01] - 0.5).abs().max() < 0.15  # A = +-0.1: the weights stay near 1/2 (0.40 / 0.60)


@pytest.mark.parametrize("name", ["bc", "dipole", "awr"])
def test_stage_table_row_matches_what_the_stage_trains(name, shards) -> None:
    """A row's flags are what its forward and loss do: pi- gets gradients iff `trains_neg`; the
    candidates are read iff `candidates` (their noise is drawn for them); build_policy freezes pi- otherwise."""
    from vla_dipole.data.collate import collate
    from vla_dipole.model.policy import DipolePolicy
    from vla_dipole.training.indexed_data import IndexedShards
    from vla_dipole.training.policy_io import TrainModule, action_shape, build_policy, forward_inputs
    from vla_dipole.training.stages import STAGES

    stage = STAGES[name]
    torch.manual_seed(0)
    policy = DipolePolicy.from_config("tiny")
    batch = collate([IndexedShards([shards])[i] for i in range(2)])
    k = batch["candidates"].shape[1] if stage.candidates else 0
    noise = sample_noise(np.arange(2), action_shape(policy), k, 100, seed=0, round_=0)
    errors = TrainModule(policy, name)(**forward_inputs(policy, batch, noise, None, name))
    assert any(key.startswith("cand") for key in errors) == stage.candidates
    loss, _, _ = stage.loss(_cfg(bc_anchor=0.5), errors, batch)
    loss.backward()
    grads = [p.grad for p in policy.head_neg.parameters()]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads) == stage.trains_neg
    cfg = OmegaConf.create({"stage": name, "init_from": None, "model": policy.config.to_dict()})
    frozen = not any(p.requires_grad for p in build_policy(cfg).head_neg.parameters())
    assert frozen == (not stage.trains_neg)
