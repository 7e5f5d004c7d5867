"""Policy speed: the head's cost per denoising step (one branch vs both batched) and omega sweeps.

``python -m vla_dipole.model.bench_policy [--presets tiny small] [--batch 1 4] [--repeats 10]`` prints two
tables; ``run_bench(...) -> list[dict]`` is what ``vla_dipole.bench`` calls.

- *head step*: ms for one ``denoise_branches`` call with pi+ alone, with pi+ and pi- batched (E = 2),
  and with two separate single-branch calls; ``both/one`` is the DIPOLE overhead per step (the target
  <= 1.15 holds where a step is latency-bound, e.g. small batches on a GPU; on a CPU core the FLOPs
  double, so expect ~1.5-2x there, still below two separate calls).
- *training step*: encode + per-sample errors + backward + AdamW on a batch of 8 (BC and DIPOLE).
- *omega sweep*: ``sample(omegas=8 values)`` in one call vs 8 single-omega calls, from a cached
  ``Conditioning`` (head only) and end to end (backbone included: once vs 8 times).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch

from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.head import denoise_branches, prepare_branches, stack_heads
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


def _ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


@torch.no_grad()
def bench_batch(policy: DipolePolicy, b: int, repeats: int, num_steps: int = 10) -> dict:
    """One table row: head step timings and sweep timings for batch size ``b``."""
    head = policy.head_pos
    batch = synthetic_batch(policy.config, b)
    cond = policy.encode(batch)
    one, both = stack_heads([policy.head_pos]), stack_heads([policy.head_pos, policy.head_neg])
    neg = stack_heads([policy.head_neg])
    m_one, m_both, m_neg = (
        prepare_branches(head, p, cond.tokens, cond.mask, cond.proprio) for p in (one, both, neg)
    )
    x = torch.randn(b, 1, policy.config.head.horizon, policy.config.head.action_dim)
    t = torch.tensor(50)
    t_one = _ms(lambda: denoise_branches(head, one, x, t, m_one), repeats)
    t_both = _ms(lambda: denoise_branches(head, both, x, t, m_both), repeats)
    t_two = _ms(
        lambda: (denoise_branches(head, one, x, t, m_one), denoise_branches(head, neg, x, t, m_neg)), repeats
    )
    reps = max(1, repeats // 20)
    return dict(
        batch=b,
        steps=num_steps,
        one_ms=t_one,
        both_ms=t_both,
        two_calls_ms=t_two,
        both_over_one=t_both / t_one,
        sweep_ms=_ms(lambda: policy.sample(cond, SWEEP, num_steps), reps),
        separate_ms=_ms(lambda: [policy.sample(cond, [w], num_steps) for w in SWEEP], reps),
        sweep_e2e_ms=_ms(lambda: policy.sample(batch, SWEEP, num_steps), reps),
        separate_e2e_ms=_ms(lambda: [policy.sample(batch, [w], num_steps) for w in SWEEP], reps),
    )


def bench_train_step(policy: DipolePolicy, b: int = 8, num_candidates: int = 4, repeats: int = 5) -> dict:
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

    out = dict(
        batch=b,
        candidates=num_candidates,
        bc_ms=_ms(lambda: step(False), repeats),
        dipole_ms=_ms(lambda: step(True), repeats),
    )
    policy.eval()
    return out


def bench_preset(preset: str, batch_sizes: Sequence[int], repeats: int, num_steps: int = 10) -> list[dict]:
    torch.manual_seed(0)
    policy = DipolePolicy.from_config(PolicyConfig.preset(preset)).eval()
    rows = [dict(preset=preset, **bench_batch(policy, b, repeats, num_steps)) for b in batch_sizes]
    rows[0]["train"] = bench_train_step(policy)
    return rows


def run_bench(
    presets: Sequence[str] = ("tiny", "small"), batch_sizes: Sequence[int] = (1, 4), repeats: int = 10
) -> list[dict]:
    rows = []
    for preset in presets:
        rows += bench_preset(preset, batch_sizes, repeats)
    return rows


def format_tables(rows: list[dict]) -> str:
    head = f"{'preset':<8} {'batch':>5} {'pi+ ms':>8} {'both ms':>8} {'both/one':>8} {'2 calls ms':>10}"
    lines = ["Head cost per denoising step (one branch vs both branches batched)", head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['preset']:<8} {r['batch']:>5} {r['one_ms']:>8.2f} {r['both_ms']:>8.2f} "
            f"{r['both_over_one']:>8.2f} {r['two_calls_ms']:>10.2f}"
        )
    head2 = (
        f"{'preset':<8} {'batch':>5} {'steps':>5} {'sweep ms':>9} {'8 calls ms':>10} {'ratio':>6} "
        f"{'e2e sweep':>9} {'e2e 8 calls':>11} {'ratio':>6}"
    )
    lines += [
        "",
        f"8-omega sweep {SWEEP} vs 8 single-omega calls (head only / with backbone)",
        head2,
        "-" * len(head2),
    ]
    for r in rows:
        lines.append(
            f"{r['preset']:<8} {r['batch']:>5} {r['steps']:>5} {r['sweep_ms']:>9.1f} {r['separate_ms']:>10.1f} "
            f"{r['sweep_ms'] / r['separate_ms']:>6.2f} {r['sweep_e2e_ms']:>9.1f} {r['separate_e2e_ms']:>11.1f} "
            f"{r['sweep_e2e_ms'] / r['separate_e2e_ms']:>6.2f}"
        )
    head3 = f"{'preset':<8} {'batch':>5} {'K':>3} {'BC step ms':>10} {'DIPOLE step ms':>14}"
    lines += ["", "Training step (encode + errors + backward + AdamW)", head3, "-" * len(head3)]
    for r in rows:
        if "train" in r:
            t = r["train"]
            lines.append(
                f"{r['preset']:<8} {t['batch']:>5} {t['candidates']:>3} {t['bc_ms']:>10.1f} {t['dipole_ms']:>14.1f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    print(format_tables(run_bench(args.presets, args.batch, args.repeats)))


if __name__ == "__main__":
    main()
