"""The hardware-needs command: its accounting agrees with DeepSpeed's estimators, and the README shows its output."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from vla_dipole.model.config import PolicyConfig
from vla_dipole.training import hardware
from vla_dipole.training.hardware import Setup, count_model, memory_per_gpu

README = hardware.DS_DIR.parents[1] / "README.md"


@pytest.fixture(scope="module")
def tiny_counts():
    base = PolicyConfig.preset("tiny")
    lora = replace(base, branch_lora=replace(base.branch_lora, enabled=True, r=4))
    return count_model(base, candidates=4), count_model(lora, candidates=4)


def test_counts_split_the_real_policy(tiny_counts):
    from vla_dipole.model.policy import DipolePolicy

    for m, lora in zip(tiny_counts, (False, True), strict=True):
        base = PolicyConfig.preset("tiny")
        cfg = replace(base, branch_lora=replace(base.branch_lora, enabled=lora, r=4))
        policy = DipolePolicy(cfg)
        assert m.trainable + m.frozen == sum(p.numel() for p in policy.parameters())
        # DIPOLE trains both heads and the adapters: everything the policy leaves trainable
        assert m.trainable == sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert tiny_counts[1].trainable > tiny_counts[0].trainable and tiny_counts[1].adapters == 2
    assert (
        hardware.flops_per_sample(tiny_counts[1])
        > 2 * hardware.flops_per_sample(tiny_counts[0]) - tiny_counts[0].head_flops
    )


@pytest.mark.parametrize("ds", hardware.DS_CONFIGS)
def test_memory_follows_deepspeed(tiny_counts, ds):
    m = tiny_counts[1]
    one, eight = (memory_per_gpu(m, Setup(ds, 4, w)) for w in (1, 8))
    bf16 = hardware._ds(ds).get("bf16", {}).get("enabled", False)
    if bf16:  # the breakdown is DeepSpeed's own estimate, term by term
        for r in (one, eight):
            assert r["params"] + r["grads"] + r["optim"] == pytest.approx(r["ds_states"], rel=1e-6)
    if "zero3" in ds and "offload" not in ds:  # ZeRO-3 partitions every parameter
        assert eight["params"] < one["params"] / 4
    if "zero2" in ds:  # ZeRO-2 replicates the parameters
        assert eight["params"] == one["params"]
    two = memory_per_gpu(m, Setup(ds, 8, 8))
    fixed = m.head_stack_bytes * (2 if bf16 else 4) / 4
    assert two["act"] - fixed == pytest.approx(2 * (eight["act"] - fixed))


@pytest.mark.slow
def test_readme_table_is_the_commands_output():
    text = README.read_text()
    cmd = re.search(r"python -m vla_dipole\.training\.hardware (.*)\n", text).group(1).split()
    shown = re.search(r"```text\n(openvla-7b: per-GPU.*?)\n```", text, flags=re.S).group(1)
    gpus = [int(v) for v in cmd[cmd.index("--gpus") + 1 : cmd.index("--micro-batch")]]
    assert shown == hardware.table("openvla-7b", [int(cmd[-1])], gpus)
