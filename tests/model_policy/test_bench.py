"""The policy bench's accounting: weight bytes, counted FLOPs and the openvla-7b estimate match the model."""

import pytest
import torch

from benchmarks.policy import (
    Machine,
    bench_preset,
    counted_calls,
    estimate_openvla_7b,
    format_tables,
    step_weight_bytes,
)
from vla_dipole.model.config import HeadConfig
from vla_dipole.model.flops import counted_flops
from vla_dipole.model.head import denoise_branches, prepare_branches, stack_heads


class Recording(dict):
    """Parameters that remember which of them were looked up."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.keys_read: set[str] = set()

    def __getitem__(self, key):
        self.keys_read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in self:
            self.keys_read.add(key)
        return super().get(key, default)


def analytic_prepare_flops(cfg: HeadConfig, cond_dim: int, proprio_dim: int, memory_len: int) -> int:
    """Matmul FLOPs of one branch's per-observation work: proprio MLP, memory projection, per-layer K/V."""
    w = cfg.width
    tokens = memory_len - 1  # the proprio token joins the projected backbone tokens
    return 2 * (proprio_dim * w + w * w) + 2 * tokens * cond_dim * w + cfg.depth * 2 * memory_len * w * 2 * w


def analytic_step_flops(cfg: HeadConfig, b: int, k: int, memory_len: int) -> int:
    """Matmul FLOPs of one branch's denoising step, from the architecture (docs/model.md)."""
    w, hidden, length = cfg.width, int(cfg.width * cfg.mlp_ratio), cfg.horizon
    tokens = b * k * length
    per_token = cfg.depth * (3 * w * w + 3 * w * w + 2 * w * hidden) + 2 * cfg.action_dim * w
    per_obs = 2 * w * w + cfg.depth * 6 * w * w + 2 * w * w  # time embedding, adaLN, final adaLN
    attention = cfg.depth * 4 * w * (b * k * length * length + b * k * length * memory_len)
    return 2 * tokens * per_token + 2 * b * per_obs + attention


def test_step_bytes_and_flops_match_the_architecture(tiny_policy, batch):
    head = tiny_policy.head_pos
    cond = tiny_policy.encode(batch)
    p = stack_heads([head])
    with torch.no_grad():
        memory = prepare_branches(head, p, cond.tokens, cond.mask, cond.proprio)
        # the bytes a step reads, measured: the parameter tensors one denoising step looks up
        read = Recording(p)
        denoise_branches(head, read, torch.randn(cond.batch_size, 2, 8, 4), torch.tensor(9), memory)
        assert step_weight_bytes(head) == sum(p[k].numel() * p[k].element_size() for k in read.keys_read)
        assert "out.weight" in read.keys_read and "proprio.net.0.weight" not in read.keys_read
        for k in (1, 4):
            x = torch.randn(cond.batch_size, k, 8, 4)
            flops = counted_flops(lambda x=x: denoise_branches(head, p, x, torch.tensor(9), memory))
            assert flops == analytic_step_flops(head.cfg, cond.batch_size, k, cond.tokens.shape[1] + 1)
        # the dispatch count does not grow with the number of branches: why a latency-bound step is ~free
        p2 = stack_heads([head, tiny_policy.head_neg])
        memory2 = prepare_branches(head, p2, cond.tokens, cond.mask, cond.proprio)
        calls = [
            counted_calls(lambda p=p, m=m: denoise_branches(head, p, x, 9, m))
            for p, m in ((p, memory), (p2, memory2))
        ]
    assert calls[0] == calls[1] > 100


def test_bench_rows_and_tables(tiny_config):
    torch.manual_seed(0)
    machine = Machine()
    floors = machine.floors(10**8, 10**6, 10)
    assert max(floors, key=floors.get) == "bandwidth" and machine.floors(0, 10**12, 10)["compute"] > 1.0
    rows = bench_preset("tiny", [1], repeats=1, num_steps=2, machine=machine)
    r = rows[0]
    assert r["regime"] in ("latency", "bandwidth", "compute") and r["regime"] == max(
        r["floors"], key=r["floors"].get
    )
    assert r["one_ms"] > 0 and r["both_ms"] > 0 and r["e2e"]["dipole_ms"] > 0 and "train" in r
    text = format_tables(rows)
    assert "both/one" in text and "DIPOLE" in text and "tiny" in text


@pytest.mark.slow
def test_openvla_7b_estimate_comes_from_the_config():
    est = estimate_openvla_7b(num_steps=10)
    cfg = HeadConfig(width=1024, depth=12, num_heads=16)
    assert est["head_step_gflop"] * 1e9 == pytest.approx(analytic_step_flops(cfg, 1, 1, est["tokens"] + 1))
    prepare = analytic_prepare_flops(cfg, 4096, 4 * 8 + 4, est["tokens"] + 1)  # Llama-2 width, 4 ego frames
    assert est["head_prepare_gflop"] * 1e9 == pytest.approx(prepare)
    branch = prepare + 10 * analytic_step_flops(cfg, 1, 1, est["tokens"] + 1)
    assert est["flops_added"] == pytest.approx(branch / (est["backbone_gflop"] * 1e9 + branch))
    # Llama-2-7B alone is ~2 * 6.5e9 FLOPs per token; the vision towers add a few hundred GFLOP per image
    assert (
        2 * 6.4e9 * est["tokens"]
        < (est["backbone_gflop"] - est["vision_gflop"]) * 1e9
        < 2 * 6.9e9 * est["tokens"] * 1.1
    )
    assert 14 < est["backbone_gb"] < 16  # 7.5 B parameters in bf16
