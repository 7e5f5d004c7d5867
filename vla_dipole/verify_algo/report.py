"""Human-readable outputs of the bandit proof: text tables, the figure and the JSON record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vla_dipole import tables  # noqa: E402
from vla_dipole.verify_algo.bandit import Bandit  # noqa: E402
from vla_dipole.verify_algo.run import VerifyResult  # noqa: E402


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def format_tables(res: VerifyResult) -> str:
    """The per-omega table, the monotonicity line and the weight-explosion table."""
    tol = res.config["tol"]
    b = res.config["bandit"]
    lines = [
        f"DIPOLE bandit proof  variant={res.config['variant']}  beta={b['beta']:g} k={b['k']:g}  "
        f"train steps={res.config['train']['steps']}  samples={res.config['num_samples']}  "
        f"solver={res.config['solver']}x{res.config['num_steps']}",
        f"tolerances: |reward - target| <= {tol['reward']:g}; nearest target (MMD) is its own and "
        f"MMD(model,target)/MMD(mu,target) <= {tol['mmd_ratio']:g}",
        "",
        tables.format_table(
            [
                "policy",
                "R model",
                "R target",
                "|dR|",
                "MMD",
                "MMD mu",
                "ratio",
                "nearest",
                "tgt ESS",
                "result",
            ],
            [
                (
                    r["policy"],
                    r["reward_model"],
                    r["reward_target"],
                    abs(r["reward_model"] - r["reward_target"]),
                    r["mmd_model"],
                    r["mmd_mu"],
                    r["mmd_ratio"],
                    r["nearest_target"],
                    r["target_ess"],
                    _verdict(r["passed"]),
                )
                for r in res.rows
            ],
            formats=["", ".3f", ".3f", ".3f", ".3f", ".3f", ".2f", "", ".0f", ""],
        ),
    ]
    m = res.monotone
    lines += [
        "",
        "mean reward vs omega (pi-, then increasing omega): "
        + " -> ".join(f"{v:.3f}" for v in m["reward_model"])
        + f"  monotone: {_verdict(m['passed'])}",
        "",
        f"weight explosion (AWR clip={res.config['awr_clip']:g}; grad norm of the weighted loss, 8 batches)",
        tables.format_table(
            ["beta", "method", "ESS frac", "max/mean", "w max", "|g| med", "|g| max"],
            [
                (
                    r["beta"],
                    r["method"],
                    r["ess_frac"],
                    r["max_over_mean"],
                    r["w_max"],
                    r["grad_norm_median"],
                    r["grad_norm_max"],
                )
                for r in res.explosion
            ],
            formats=["g", "", ".4f", ".3g", ".3g", ".3g", ".3g"],
        ),
    ]
    e = res.explosion_check
    lines += [
        f"at beta={e['beta']:g}: DIPOLE bounded={e['dipole_bounded']}  AWR exploded={e['awr_exploded']}  "
        f"{_verdict(e['passed'])}",
        "",
        f"OVERALL: {_verdict(res.passed)}  ({res.seconds:.0f} s)",
    ]
    return "\n".join(lines)


def plot_samples(res: VerifyResult, bandit: Bandit, path: Path) -> Path:
    """Samples of mu, pi+, pi- and the omega-combined policies (top) and the exact targets (bottom)."""
    policies = [r["policy"] for r in res.rows]
    cols = ["mu", *policies]
    fig, axes = plt.subplots(2, len(cols), figsize=(3.0 * len(cols), 6.2), sharex=True, sharey=True)
    grid = torch.linspace(-1.6, 1.6, 161)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    g = bandit.reward(torch.stack([gx, gy], -1))
    for row in range(2):
        for j, name in enumerate(cols):
            ax = axes[row, j]
            ax.contourf(gx, gy, g, levels=12, cmap="viridis", alpha=0.55)
            key = name if (row == 0 or name == "mu") else "target " + name
            pts = res.samples[key][:1500]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, c="crimson" if row == 0 else "black", alpha=0.5)
            label = {"mu": "mu (data)", "omega=0": "pi+ (omega=0)"}.get(name, name)
            ax.set_title(label if row == 0 else f"target: {label}", fontsize=9)
            ax.set_xlim(-1.6, 1.6)
            ax.set_ylim(-1.6, 1.6)
            ax.set_aspect("equal")
    fig.suptitle(
        "DIPOLE bandit: policy samples (top) vs exact pi* ∝ mu·σ(βA+k)·exp(ωβA) (bottom); colour = G"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_json(res: VerifyResult, path: Path) -> Path:
    """Results as JSON (non-finite numbers written as strings "inf"/"nan")."""
    path.write_text(json.dumps(_json_safe(res.to_json()), indent=2))
    return path
