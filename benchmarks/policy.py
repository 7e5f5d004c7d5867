"""Policy speed: what running both DIPOLE branches (pi+, pi-) costs per denoising step and end to end.

``python -m benchmarks.policy [--presets tiny small] [--batch 1 4 16] [--repeats 10] [--threads 1]``
prints four tables; ``run_bench(...) -> list[dict]`` returns the measured rows.

- *head step*: ms for one ``denoise_branches`` call with pi+ alone, with pi+ and pi- batched (E = 2)
  and with two separate calls, plus what explains the ratio: the weight MB and GFLOP one branch needs
  per step, the rate the batched step achieves, and its regime: the largest of three floors measured on
  this machine in the same run (``Machine``): its weight bytes at the stream rate for that working-set
  size, its FLOPs at a GEMM's rate, its op count at the cost of one minimal op. both/one <= 1.15 can
  only hold where latency (the op count, the same for E = 1 and 2) binds: in the other two regimes
  pi- doubles the bytes or the FLOPs.
- *end to end*: backbone ms per observation; sampling with pi+ alone (omega = 0) vs DIPOLE (omega = 1,
  both branches every step), backbone included; an 8-omega sweep in one call vs 8 single-omega calls.
- *training step*: encode + per-sample errors + backward + AdamW on a batch of 8 (BC and DIPOLE).
- *openvla-7b estimate*: computed from ``configs/model/openvla-7b.yaml`` on the meta device (no
  weights, nothing measured): backbone FLOPs per observation vs the head's per-branch FLOPs and weight
  bytes, i.e. what share of end-to-end inference the second branch adds.

Timings are the median over interleaved rounds. With one torch thread (the default: the CI box is
shared) they are this process's CPU time, which other jobs on the box disturb far less than wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch.overrides import TorchFunctionMode

from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.flops import PROMPT_TOKENS_7B, counted_flops
from vla_dipole.model.head import (
    DiffusionTrajectoryHead,
    denoise_branches,
    inference_params,
    prepare_branches,
    stack_heads,
)
from vla_dipole.model.policy import DipolePolicy

SWEEP = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]


def synthetic_batch(config: PolicyConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A loader-shaped batch of random images and ego states (docs/shards.md)."""
    g = torch.Generator().manual_seed(seed)
    obs, h = config.observation, max(config.observation.history_frames, config.observation.ego_history)
    n_img = h * len(obs.cameras)
    return {
        "images": torch.randint(0, 256, (batch_size, n_img, 144, 256, 3), dtype=torch.uint8, generator=g),
        "ego_pose": torch.randn(batch_size, h, 3, generator=g),
        "ego_velocity": 5 * torch.rand(batch_size, h, 2, generator=g),
        "ego_acceleration": torch.randn(batch_size, h, 2, generator=g),
        "driving_command": torch.nn.functional.one_hot(
            torch.randint(0, 4, (batch_size, h), generator=g), 4
        ).float(),
    }


# ---- timing ----------------------------------------------------------------------------------------
def _clock() -> Callable[[], float]:
    """CPU time of this process with one intra-op thread (robust on a shared box), wall time otherwise."""
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def timed(fns: Mapping[str, Callable[[], object]], repeats: int, rounds: int = 5) -> dict[str, float]:
    """Median ms per call of each function, measured in interleaved rounds (so drifts hit all alike)."""
    clock, samples = _clock(), {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in fns.items():
            start = clock()
            for _ in range(repeats):
                fn()
            samples[name].append((clock() - start) / repeats * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


# ---- what a step needs, and what the machine can do -------------------------------------------------
def step_weight_bytes(head: DiffusionTrajectoryHead) -> int:
    """Bytes of one branch's parameters a denoising step reads (the memory projections are cached)."""
    once = (head.cond_proj, head.proprio, *(block["kv_cross"] for block in head.blocks))  # per observation
    skip = {id(p) for module in once for p in module.parameters()}
    return sum(p.numel() * p.element_size() for p in head.parameters() if id(p) not in skip)


def counted_calls(fn: Callable[[], object]) -> int:
    """How many torch functions / tensor methods ``fn`` calls (each pays the eager dispatch overhead)."""

    class _Count(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            _Count.calls += 1
            return func(*args, **(kwargs or {}))

    with _Count():
        fn()
    return _Count.calls


class Machine:
    """Probes of this machine at the current thread count, for a roofline-style floor of a call's time.

    ``floors`` gives three lower bounds in ms: streaming the bytes (at the rate measured for a buffer of
    that size, so a working set that fits the cache counts at cache speed), the FLOPs at a 512^3 GEMM's
    rate, and the op count at the cost of a minimal dispatched op. The largest names the regime.
    """

    def __init__(self, gemm_size: int = 512) -> None:
        a, b = torch.randn(gemm_size, gemm_size), torch.randn(gemm_size, gemm_size)
        small = torch.randn(16)
        ms = timed({"gemm": lambda: a @ b, "op": lambda: torch.add(small, small)}, repeats=200, rounds=3)
        self.gflops = 2 * gemm_size**3 / ms["gemm"] / 1e6
        self.op_us = ms["op"] * 1e3
        self._gbps: dict[int, float] = {}

    def gbps(self, nbytes: int) -> float:
        """GB/s reading ``nbytes`` (rounded to 1 MiB) again and again, as a step reads its weights."""
        mib = max(1, round(nbytes / 2**20))
        if mib not in self._gbps:
            buf = torch.ones(mib * 2**18)
            ms = timed({"sum": buf.sum}, repeats=max(1, 256 // mib))["sum"]
            self._gbps[mib] = mib * 2**20 / ms / 1e6
        return self._gbps[mib]

    def floors(self, nbytes: int, flops: int, calls: int) -> dict[str, float]:
        """Lower bounds (ms) of a call: {"bandwidth": ..., "compute": ..., "latency": ...}."""
        return {
            "bandwidth": nbytes / self.gbps(nbytes) / 1e6,
            "compute": flops / self.gflops / 1e6,
            "latency": calls * self.op_us / 1e3,
        }


# ---- measurements ------------------------------------------------------------------------------------
@torch.no_grad()
def bench_head_step(policy: DipolePolicy, b: int, repeats: int, machine: Machine) -> dict:
    """One denoising step of the head for batch ``b`` (one candidate): pi+ alone vs both batched."""
    head, cond = policy.head_pos, policy.encode(synthetic_batch(policy.config, b))
    params = {
        "one": inference_params(stack_heads([policy.head_pos])),
        "both": inference_params(stack_heads([policy.head_pos, policy.head_neg])),
        "neg": inference_params(stack_heads([policy.head_neg])),
    }
    mem = {k: prepare_branches(head, p, cond.tokens, cond.mask, cond.proprio) for k, p in params.items()}
    x = torch.randn(b, 1, policy.config.head.horizon, policy.config.head.action_dim)
    t = torch.tensor(50)

    def step(k: str) -> Callable[[], torch.Tensor]:
        return lambda: denoise_branches(head, params[k], x, t, mem[k])

    ms = timed(
        {"one": step("one"), "both": step("both"), "two": lambda: (step("one")(), step("neg")())}, repeats
    )
    nbytes, flops = step_weight_bytes(head), counted_flops(step("one"))
    floors = machine.floors(2 * nbytes, 2 * flops, counted_calls(step("both")))
    return dict(
        batch=b,
        one_ms=ms["one"],
        both_ms=ms["both"],
        two_calls_ms=ms["two"],
        both_over_one=ms["both"] / ms["one"],
        weight_mb=nbytes / 1e6,
        gflop=flops / 1e9,
        gbps=2 * nbytes / ms["both"] / 1e6,
        gflops=2 * flops / ms["both"] / 1e6,
        floors=floors,
        regime=max(floors, key=floors.get),
    )


@torch.no_grad()
def bench_end_to_end(policy: DipolePolicy, b: int, num_steps: int) -> dict:
    """Backbone once + ``num_steps`` head steps: pi+ alone vs DIPOLE; an 8-omega sweep vs 8 calls."""
    batch = synthetic_batch(policy.config, b)
    cond = policy.encode(batch)
    ms = timed(
        {
            "backbone": lambda: policy.encode(batch),
            "pos": lambda: policy.sample(batch, [0.0], num_steps),
            "dipole": lambda: policy.sample(batch, [1.0], num_steps),
        },
        repeats=1,
        rounds=5,
    )
    ms |= timed(
        {
            "sweep": lambda: policy.sample(cond, SWEEP, num_steps),
            "separate": lambda: [policy.sample(cond, [w], num_steps) for w in SWEEP],
            "sweep_e2e": lambda: policy.sample(batch, SWEEP, num_steps),
            "separate_e2e": lambda: [policy.sample(batch, [w], num_steps) for w in SWEEP],
        },
        repeats=1,
        rounds=3,
    )
    return dict(
        batch=b,
        steps=num_steps,
        backbone_ms_per_obs=ms["backbone"] / b,
        pos_ms=ms["pos"],
        dipole_ms=ms["dipole"],
        dipole_over_pos=ms["dipole"] / ms["pos"],
        sweep_ms=ms["sweep"],
        separate_ms=ms["separate"],
        sweep_e2e_ms=ms["sweep_e2e"],
        separate_e2e_ms=ms["separate_e2e"],
    )


def bench_train_step(policy: DipolePolicy, b: int = 8, num_candidates: int = 4, repeats: int = 3) -> dict:
    """ms per optimisation step on one batch: BC (pi+ on the human trajectory) and DIPOLE (both heads on K candidates)."""
    batch = synthetic_batch(policy.config, b)
    g = torch.Generator().manual_seed(0)
    human = torch.randn(b, 1, policy.config.head.horizon, 3, generator=g)
    cands = torch.randn(b, num_candidates, policy.config.head.horizon, 3, generator=g)
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-4)
    policy.train()

    def step(dipole: bool) -> None:
        cond = policy.encode(batch)
        if dipole:
            err_pos, err_neg = policy.branch_errors(cond, policy.processor.trajectory_to_actions(cands))
            loss = err_pos.mean() + err_neg.mean()
        else:
            loss = policy.bc_error(cond, policy.processor.trajectory_to_actions(human)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    ms = timed({"bc": lambda: step(False), "dipole": lambda: step(True)}, repeats, rounds=3)
    policy.eval()
    return dict(batch=b, candidates=num_candidates, bc_ms=ms["bc"], dipole_ms=ms["dipole"])


def bench_preset(
    preset: str, batch_sizes: Sequence[int], repeats: int, num_steps: int = 10, machine: Machine | None = None
) -> list[dict]:
    torch.manual_seed(0)
    policy = DipolePolicy.from_config(PolicyConfig.preset(preset)).eval()
    machine = machine or Machine()
    rows = [
        dict(
            preset=preset,
            **bench_head_step(policy, b, repeats, machine),
            e2e=bench_end_to_end(policy, b, num_steps),
        )
        for b in batch_sizes
    ]
    rows[0]["train"] = bench_train_step(policy)
    return rows


def run_bench(
    presets: Sequence[str] = ("tiny", "small"), batch_sizes: Sequence[int] = (1, 4, 16), repeats: int = 10
) -> list[dict]:
    machine = Machine()
    rows = []
    for preset in presets:
        rows += bench_preset(preset, batch_sizes, repeats, machine=machine)
    return rows


# ---- the openvla-7b estimate (meta device: shapes only) ---------------------------------------------
def estimate_openvla_7b(num_steps: int = 10, batch: int = 1, prompt_tokens: int = PROMPT_TOKENS_7B) -> dict:
    """FLOPs and bf16 weight bytes of the real-size backbone and one head branch, from the config alone.

    Vision + projector FLOPs are counted by running them on the meta device; the LLM's (whose mask code
    needs real values) are 2 * parameters * tokens + 4 * layers * tokens^2 * hidden (QK^T and AV).
    """
    from vla_dipole.model.backbone import PrismaticBackbone

    config = PolicyConfig.preset("openvla-7b")
    bb_cfg = config.effective_backbone()
    with torch.device("meta"):
        backbone = PrismaticBackbone(bb_cfg)
        head = DiffusionTrajectoryHead(config.head, backbone.hidden_size, config.observation.proprio_dim)
        n_images = config.observation.history_frames * len(config.observation.cameras)
        pixels = torch.zeros(batch, n_images, 6, bb_cfg.image_size, bb_cfg.image_size)
        with torch.no_grad():
            vision = counted_flops(lambda: backbone.embed_images(pixels)) / batch
        tokens_len = n_images * backbone.num_patches + prompt_tokens
        llm = backbone.language_model.get_decoder()
        llm_params = sum(p.numel() for n, p in llm.named_parameters() if "embed_tokens" not in n)
        llm_cfg = bb_cfg.llm
        llm_flops = (
            2 * llm_params * tokens_len + 4 * llm_cfg.num_hidden_layers * tokens_len**2 * llm_cfg.hidden_size
        )
        p = stack_heads([head])
        tokens = torch.zeros(batch, tokens_len, backbone.hidden_size)
        mask = torch.ones(batch, tokens_len, dtype=torch.bool)
        proprio = torch.zeros(batch, head.proprio_dim)
        with torch.no_grad():
            prepare = counted_flops(lambda: prepare_branches(head, p, tokens, mask, proprio)) / batch
            memory = prepare_branches(head, p, tokens, mask, proprio)
            x = torch.zeros(batch, 1, config.head.horizon, config.head.action_dim)
            step = counted_flops(lambda: denoise_branches(head, p, x, torch.tensor(5), memory)) / batch
    backbone_flops = vision + llm_flops
    branch_flops = prepare + num_steps * step
    bf16 = 2
    backbone_bytes = sum(p.numel() for p in backbone.parameters()) * bf16
    head_step_bytes = step_weight_bytes(head) // head.out.weight.element_size() * bf16
    branch_bytes = num_steps * head_step_bytes  # a batch-1 step streams the branch's weights once
    return dict(
        steps=num_steps,
        tokens=tokens_len,
        backbone_gflop=backbone_flops / 1e9,
        vision_gflop=vision / 1e9,
        head_prepare_gflop=prepare / 1e9,
        head_step_gflop=step / 1e9,
        head_params_m=sum(p.numel() for p in head.parameters()) / 1e6,
        backbone_gb=backbone_bytes / 1e9,
        head_step_gb=head_step_bytes / 1e9,
        flops_added=branch_flops / (backbone_flops + branch_flops),
        bytes_added=branch_bytes / (backbone_bytes + branch_bytes),
    )


# ---- tables --------------------------------------------------------------------------------------------
def format_tables(rows: list[dict], estimate: dict | None = None) -> str:
    clock = (
        "CPU ms, 1 thread" if torch.get_num_threads() == 1 else f"wall ms, {torch.get_num_threads()} threads"
    )
    head = (
        f"{'preset':<7}{'batch':>6}{'pi+ ms':>8}{'both ms':>9}{'both/one':>9}{'2 calls':>9}"
        f"{'MB/br':>7}{'GFLOP/br':>9}{'GB/s':>7}{'GFLOP/s':>8}{'floors bw/flop/ops ms':>23}  regime"
    )
    lines = [f"Head cost per denoising step, one candidate per observation ({clock})", head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['preset']:<7}{r['batch']:>6}{r['one_ms']:>8.2f}{r['both_ms']:>9.2f}{r['both_over_one']:>9.2f}"
            f"{r['two_calls_ms']:>9.2f}{r['weight_mb']:>7.1f}{r['gflop']:>9.3f}{r['gbps']:>7.1f}"
            f"{r['gflops']:>8.1f}{'/'.join(f'{v:.2f}' for v in r['floors'].values()):>23}  {r['regime']}"
        )
    lines += [
        "MB/br, GFLOP/br: one branch's weights read and matmul FLOPs per step; GB/s, GFLOP/s: achieved by the",
        "batched step; floors: its bytes at this machine's stream rate, FLOPs at its GEMM rate, ops at the cost",
        "of a minimal op; regime: the largest floor (ratios to compare, absolute numbers move with the box's load)",
    ]
    head2 = (
        f"{'preset':<7}{'batch':>6}{'steps':>6}{'backbone/obs':>13}{'pi+ only':>10}{'DIPOLE':>9}{'ratio':>7}"
        f"{'sweep':>9}{'8 calls':>9}{'ratio':>7}{'e2e sweep':>10}{'e2e 8':>9}{'ratio':>7}"
    )
    lines += [
        "",
        f"End to end ms: sampling with pi+ alone vs DIPOLE (backbone once + N steps of both branches); "
        f"8-omega sweep {SWEEP} vs 8 single-omega calls (head only, then with the backbone)",
        head2,
        "-" * len(head2),
    ]
    for r in rows:
        e = r["e2e"]
        lines.append(
            f"{r['preset']:<7}{e['batch']:>6}{e['steps']:>6}{e['backbone_ms_per_obs']:>13.1f}{e['pos_ms']:>10.1f}"
            f"{e['dipole_ms']:>9.1f}{e['dipole_over_pos']:>7.2f}{e['sweep_ms']:>9.1f}{e['separate_ms']:>9.1f}"
            f"{e['sweep_ms'] / e['separate_ms']:>7.2f}{e['sweep_e2e_ms']:>10.1f}{e['separate_e2e_ms']:>9.1f}"
            f"{e['sweep_e2e_ms'] / e['separate_e2e_ms']:>7.2f}"
        )
    head3 = f"{'preset':<7}{'batch':>6}{'K':>3}{'BC step ms':>11}{'DIPOLE step ms':>15}"
    lines += ["", "Training step (encode + errors + backward + AdamW)", head3, "-" * len(head3)]
    for r in rows:
        if "train" in r:
            t = r["train"]
            lines.append(
                f"{r['preset']:<7}{t['batch']:>6}{t['candidates']:>3}{t['bc_ms']:>11.1f}{t['dipole_ms']:>15.1f}"
            )
    if estimate is not None:
        e = estimate
        lines += [
            "",
            "openvla-7b ESTIMATE (computed from configs/model/openvla-7b.yaml, not measured; batch 1, "
            f"{e['tokens']} backbone tokens incl. {PROMPT_TOKENS_7B} assumed prompt tokens, {e['steps']} steps)",
            f"  backbone: {e['backbone_gflop']:.0f} GFLOP/obs (vision {e['vision_gflop']:.0f}), "
            f"{e['backbone_gb']:.1f} GB bf16 weights",
            f"  head, per branch: {e['head_params_m']:.0f} M params; prepare {e['head_prepare_gflop']:.1f} GFLOP/obs, "
            f"step {e['head_step_gflop']:.2f} GFLOP, {e['head_step_gb']:.2f} GB bf16 weights read per step",
            f"  the second branch adds {100 * e['flops_added']:.1f}% of the FLOPs of pi+-only inference; "
            f"if every step streams its weights (batch 1, weights not cached) {100 * e['bytes_added']:.0f}% of the bytes",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: CPU-time timings)")
    ap.add_argument("--no-estimate", action="store_true", help="skip the openvla-7b estimate")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    rows = run_bench(args.presets, args.batch, args.repeats)
    print(format_tables(rows, None if args.no_estimate else estimate_openvla_7b()))


if __name__ == "__main__":
    main()
