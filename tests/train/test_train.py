"""train.py end to end on the tiny model, single process: BC learns, DIPOLE starts from BC with
complementary weights, a SIGKILLed or preempted run resumes to the same losses, the feature cache
gives the same losses, config mistakes fail clearly."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.policy import DipolePolicy
from vla_dipole.train import main
from vla_dipole.training.config import ConfigError
from vla_dipole.training.indexed_data import IndexedShards
from vla_dipole.training.objective import sample_noise

from .conftest import REPO, losses, read_jsonl, tiny_args


def _fixed_batch_error(policy: DipolePolicy, shards: Path) -> float:
    """BC error of pi+ on 8 fixed samples with fixed noise and timesteps."""
    from vla_dipole.data.collate import collate

    data = IndexedShards([shards])
    batch = collate([data[i] for i in range(8)])
    noise = sample_noise(np.arange(8), (8, 4), 0, 100, seed=123, round_=0)
    policy.eval()
    with torch.no_grad():
        cond = policy.encode(batch)
        actions = policy.processor.trajectory_to_actions(batch["human"]).unsqueeze(1)
        err = policy.bc_error(cond, actions, noise.human.unsqueeze(1), noise.human_t.unsqueeze(1))
    return float(err.mean())


@pytest.fixture(scope="module")
def bc_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bc") / "run"
    main(tiny_args(shards, out, **{"optim.lr": 3e-3}))
    return out


def test_bc_learns_and_saves_everything(bc_run: Path, shards: Path) -> None:
    torch.manual_seed(0)
    fresh = DipolePolicy.from_config(PolicyConfig.preset("tiny"))
    from vla_dipole.data.shard_io import read_manifest

    fresh.set_trajectory_stats(read_manifest(shards)["traj_stats"])
    trained = DipolePolicy.from_pretrained(bc_run / "policy")
    before, after = _fixed_batch_error(fresh, shards), _fixed_batch_error(trained, shards)
    assert after < 0.8 * before, (before, after)
    metrics = read_jsonl(bc_run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 9)) and metrics[-1]["samples"] == 32
    assert metrics[0]["lr"] == pytest.approx(1.5e-3) and metrics[-1]["lr"] == pytest.approx(
        3e-4
    )  # warmup, cosine
    assert all(np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0 for m in metrics)
    assert (bc_run / "config.yaml").is_file() and "stage: bc" in (bc_run / "config.yaml").read_text()
    ckpts = sorted(p.name for p in bc_run.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-00000004", "checkpoint-00000008"]  # every 16 samples, keep last 2
    # BC trains pi+ only: the exported pi- is still the untrained initialisation
    torch.testing.assert_close(trained.head_neg.out.weight, fresh.head_neg.out.weight)


def test_dipole_from_bc(bc_run: Path, shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "dipole"
    main(
        tiny_args(
            shards,
            out,
            stage="dipole",
            init_from=str(bc_run / "policy"),
            **{
                "schedule.total_samples": 8,
                "dipole.beta": 2.0,
                "dipole.bc_anchor": 0.1,
                "logging.tensorboard": True,
                "ema.enabled": True,
                "ema.decay": 0.9,
            },
        )
    )
    metrics = read_jsonl(out / "metrics.jsonl")
    first = metrics[0]
    assert first["err_pos"] == pytest.approx(first["err_neg"], rel=1e-6)  # pi+ and pi- start from the BC head
    assert 0.0 < first["w_pos_min"] <= first["w_pos_mean"] <= first["w_pos_max"] < 1.0
    assert first["loss"] == pytest.approx(
        first["loss_pos"] + first["loss_neg"] + 0.1 * first["loss_bc_anchor"], rel=1e-5
    )
    assert {"reward_mean", "reward_std", "lr", "grad_norm", "samples_per_s"} <= set(first)
    policy = DipolePolicy.from_pretrained(out / "policy")
    assert not torch.equal(policy.head_pos.out.weight, policy.head_neg.out.weight)  # trained apart
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert "w_pos" in events.Tags()["histograms"] and "loss_pos" in events.Tags()["scalars"]


def test_bc_trajectory_probe_trains_and_stays_out_of_the_export(
    bc_run: Path, shards: Path, tmp_path: Path
) -> None:
    from safetensors import safe_open

    out = tmp_path / "aux"
    main(tiny_args(shards, out, **{"optim.lr": 3e-3, "bc.aux_weight": 1.0, "ema.enabled": True}))
    metrics = read_jsonl(out / "metrics.jsonl")
    assert metrics[-1]["loss_aux"] < 0.5 * metrics[0]["loss_aux"]  # the probe learns the logged trajectory
    assert all(m["loss"] == pytest.approx(m["loss_bc"] + m["loss_aux"], rel=1e-5) for m in metrics)
    for name in ("heads.safetensors", "backbone.safetensors"):  # same tensors as a plain BC export
        with safe_open(out / "policy" / name, "pt") as a, safe_open(bc_run / "policy" / name, "pt") as b:
            assert set(a.keys()) == set(b.keys()), name
    DipolePolicy.from_pretrained(out / "policy")


def test_trajectory_probe_sends_a_gradient_to_the_vision_towers(shards: Path) -> None:
    from vla_dipole.data.collate import collate
    from vla_dipole.data.shard_io import read_manifest
    from vla_dipole.model.processor import batch_speed
    from vla_dipole.training.policy_io import TrainModule

    torch.manual_seed(0)
    config = PolicyConfig.preset("tiny")
    config.backbone.vision_mode = "full"  # the demo preset's trainable towers
    policy = DipolePolicy.from_config(config)
    policy.set_trajectory_stats(read_manifest(shards)["traj_stats"])
    module = TrainModule(policy, "bc", aux_probe=True)
    data = IndexedShards([shards])
    batch = collate([data[i] for i in range(4)])
    actions = policy.processor.trajectory_to_actions(batch["human"], batch_speed(batch))
    module.probe.error(policy.encode(batch), actions).mean().backward()
    towers = [
        p
        for n, p in policy.named_parameters()
        if n.startswith("backbone.vision_backbone") and p.requires_grad
    ]
    assert towers and sum(float(p.grad.abs().sum()) for p in towers if p.grad is not None) > 0
    assert all(p.grad is None for p in policy.head_pos.parameters())  # the probe reads the tokens only


def test_awr_stage(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "awr"
    main(
        tiny_args(shards, out, stage="awr", **{"schedule.total_samples": 8, "awr.beta": 5.0, "awr.clip": 2.0})
    )
    metrics = read_jsonl(out / "metrics.jsonl")
    assert all(0.0 < m["w_min"] and m["w_max"] <= 2.0 + 1e-6 for m in metrics)  # exp(beta A) clipped at 2
    assert max(m["w_max"] for m in metrics) == pytest.approx(2.0)  # beta=5 saturates the clip


def test_feature_cache_gives_identical_losses(shards: Path, tmp_path: Path) -> None:
    common = {"schedule.total_samples": 12, "checkpoint.every_samples": 1000}
    main(tiny_args(shards, tmp_path / "plain", **common))
    main(tiny_args(shards, tmp_path / "cached", **common, **{"feature_cache.enabled": True}))
    assert (tmp_path / "cached" / "feature_cache" / "round-00" / "cache_index.json").is_file()
    np.testing.assert_allclose(losses(tmp_path / "cached"), losses(tmp_path / "plain"), rtol=1e-5)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"data.shards": "/nonexistent/shards"}, r"data\.shards.*not a shard directory"),
        ({"optim.learning_rate": 1}, r"unknown key 'optim.learning_rate'"),
        ({"schedule.global_batch": 5}, r"schedule.global_batch.*multiple of schedule.micro_batch=2"),
        (
            {"stage": "dipole", "bc.aux_weight": 1.0},
            r"config field 'stage': expected bc when bc.aux_weight > 0",
        ),
        ({"bc.aux_weight": -1.0}, r"config field 'bc.aux_weight': expected >= 0"),
    ],
)
def test_config_mistakes_fail_before_training(
    shards: Path, tmp_path: Path, override: dict, pattern: str
) -> None:
    with pytest.raises(ConfigError, match=pattern):
        main(tiny_args(shards, tmp_path / "bad", **override))


# ------------------------------------------------------------------ interruption: SIGKILL and preemption


@pytest.fixture(scope="module")
def reference(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    out = tmp_path_factory.mktemp("ref") / "run"
    main(tiny_args(shards, out, **{"checkpoint.every_samples": 8}))
    return losses(out)


def _start(args: list[str]) -> subprocess.Popen:
    import os
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "vla_dipole" / "train.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_steps(out: Path, proc: subprocess.Popen, steps: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "metrics.jsonl").is_file() and len(losses(out)) >= steps:
            return
        if proc.poll() is not None:
            raise AssertionError(f"train.py exited early ({proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("train.py did not reach the expected step in time")


def _signal_run(shards: Path, out: Path, sig: int, after_steps: int) -> tuple[list[str], subprocess.Popen]:
    """Start train.py as a process, send `sig` once it logged `after_steps` steps, wait for its exit."""
    args = tiny_args(shards, out, **{"checkpoint.every_samples": 8})
    proc = _start(args)
    _wait_for_steps(out, proc, after_steps)
    proc.send_signal(sig)
    proc.communicate(timeout=300)
    return args, proc


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted(
    shards: Path, tmp_path: Path, reference: list[float]
) -> None:
    out = tmp_path / "killed"
    args, _ = _signal_run(shards, out, signal.SIGKILL, 5)  # past the checkpoint at step 4, mid-run
    assert len(losses(out)) < len(reference)
    main(args)  # the same command again
    assert losses(out) == pytest.approx(reference, rel=1e-6, abs=1e-7)


@pytest.mark.slow
def test_preemption_signal_checkpoints_and_resumes(
    shards: Path, tmp_path: Path, reference: list[float]
) -> None:
    out = tmp_path / "preempted"
    args, proc = _signal_run(shards, out, signal.SIGUSR1, 3)
    assert proc.returncode == 0
    info = json.loads((out / "preempted.json").read_text())
    assert 3 <= info["step"] < 8 and info["samples_seen"] == 4 * info["step"]
    assert Path(info["checkpoint"]).is_dir() and len(losses(out)) == info["step"]
    main(args)
    assert not (out / "preempted.json").exists()
    assert losses(out) == pytest.approx(reference, rel=1e-6, abs=1e-7)  # no lost or repeated samples
