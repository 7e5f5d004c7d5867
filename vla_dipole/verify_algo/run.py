"""The bandit experiment: train pi+/pi-, sample with several omega, check against the exact target."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

from vla_dipole.sampling import build_scheduler, sample_dichotomous
from vla_dipole.verify_algo.bandit import Bandit, TargetOracle
from vla_dipole.verify_algo.explosion import weight_explosion
from vla_dipole.verify_algo.metrics import is_monotone, mmd_matrix
from vla_dipole.verify_algo.nets import TrainConfig, make_eps_fn, train_dichotomous

#: Variants: the correct algorithm and two deliberate bugs the checks must catch.
VARIANTS = ("dipole", "swapped_omega", "same_weights")
#: omega = -1 samples pi- alone: (1 - 1) eps+ + 1 eps-.
PI_NEG = -1.0


@dataclass
class Tolerances:
    """Pass thresholds, set from what the correct implementation reaches on CPU.

    Measured with the correct variant: quick (seeds 0, 1; omega <= 1) |dR| <= 0.04, MMD ratio <= 0.68;
    full (seed 0; omega <= 2) |dR| <= 0.05, ratio <= 0.38. The broken variants miss by far more
    (|dR| > 0.5, ratio > 1, nearest target wrong). What remains is fit error of the toy nets plus the
    known guidance effect (guiding noised densities is not the tilt of the noised target): at omega >= 1
    the guided samples are somewhat sharper than pi*. The quick run's 1500 steps do not settle omega = 2
    (its sample is nearest the omega = 1 target), so the quick sweep stops at omega = 1.
    """

    reward: float = 0.12  # |E_model[G] - E_target[G]|, G in [-1, 1]
    # distribution check: of all the sweep's targets the sample is nearest (MMD) to its own, and its MMD
    # to it is at most this fraction of mu's (the policy before any improvement)
    mmd_ratio: float = 0.8
    monotone_slack: float = 0.0
    explosion_ess: float = 0.05  # raw AWR ESS fraction below this at the largest beta = "exploded"
    explosion_grad_ratio: float = 3.0  # DIPOLE grad norm max <= this x BC grad norm max = "bounded"


@dataclass
class VerifyConfig:
    bandit: Bandit = field(default_factory=Bandit)
    num_data: int = 20_000  # the offline dataset of mu samples the policies are trained on
    pool_size: int = 200_000  # mu samples for the exact target's importance estimates
    num_samples: int = 2000  # policy / target samples per omega
    omegas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    train: TrainConfig = field(default_factory=TrainConfig)
    num_train_timesteps: int = 100
    solver: str = "ddpm"
    num_steps: int = 50
    explosion_betas: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)
    awr_clip: float = 20.0
    tol: Tolerances = field(default_factory=Tolerances)
    variant: str = "dipole"
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> VerifyConfig:
        """Reduced size for the tests: fewer steps and samples, same checks."""
        base = {
            "pool_size": 100_000,
            "num_samples": 1000,
            "omegas": (0.0, 0.5, 1.0),  # omega=2 needs the full run's training (see Tolerances)
            "train": TrainConfig(steps=1500, batch_size=128),
            "explosion_betas": (3.0, 100.0),
        }
        base.update(overrides)
        return cls(**base)


@dataclass
class VerifyResult:
    config: dict
    rows: list[dict]  # one per omega (and pi-)
    monotone: dict
    explosion: list[dict]
    explosion_check: dict
    train_log: list[dict]
    samples: dict[str, Tensor]  # "mu", "omega=<w>", "target omega=<w>" for the figure
    passed: bool
    seconds: float

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("samples")
        return d


def _explosion_check(rows: list[dict], tol: Tolerances) -> dict:
    beta = max(r["beta"] for r in rows)
    at = {r["method"]: r for r in rows if r["beta"] == beta}
    bc = at["bc"]["grad_norm_max"]
    dipole_bounded = all(
        at[m]["w_max"] <= 1.0 and at[m]["grad_norm_max"] <= tol.explosion_grad_ratio * bc
        for m in ("dipole_pos", "dipole_neg")
    )
    awr_exploded = at["awr_raw"]["ess_frac"] < tol.explosion_ess
    return {
        "beta": beta,
        "dipole_bounded": dipole_bounded,
        "awr_exploded": awr_exploded,
        "passed": dipole_bounded and awr_exploded,
    }


@dataclass
class Trained:
    """Everything the evaluation needs from training; reusable across sampling variants."""

    oracle: TargetOracle
    data: Tensor
    adv: Tensor
    scheduler: SchedulerMixin
    eps_pos: torch.nn.Module
    eps_neg: torch.nn.Module
    log: list[dict]
    weights: str


def _weights_mode(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    return "same" if variant == "same_weights" else "dipole"


def train_policies(cfg: VerifyConfig, progress: bool = True) -> Trained:
    """Draw the offline dataset from mu and train eps+ / eps- on it (the expensive part)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    oracle = TargetOracle.build(cfg.bandit, cfg.pool_size, gen)
    data = cfg.bandit.sample_mu(cfg.num_data, gen)
    adv = oracle.advantage(data)
    scheduler = build_scheduler(cfg.solver, num_train_timesteps=cfg.num_train_timesteps)
    weights = _weights_mode(cfg.variant)
    train_cfg = dataclasses.replace(cfg.train, weights=weights)
    eps_pos, eps_neg, log = train_dichotomous(
        data, adv, cfg.bandit.beta, cfg.bandit.k, scheduler, train_cfg, gen, progress
    )
    return Trained(oracle, data, adv, scheduler, eps_pos, eps_neg, log, weights)


def _compare_with_targets(
    cfg: VerifyConfig, oracle: TargetOracle, xs: list[Tensor], omegas: tuple[float, ...], gen: torch.Generator
) -> tuple[list[dict], dict[str, Tensor]]:
    """One result row per omega: mean reward vs the exact one, MMD to every target of the sweep."""
    mu_ref = cfg.bandit.sample_mu(cfg.num_samples, gen)
    names = ["pi-" if w == PI_NEG else f"omega={w:g}" for w in omegas]
    targets = [oracle.sample(w, cfg.num_samples, gen) for w in omegas]
    dist = mmd_matrix([*xs, mu_ref], targets)  # rows: each omega's samples, then mu; columns: targets
    rows, samples = [], {}
    for i, omega in enumerate(omegas):
        model_r, target_r = float(cfg.bandit.reward(xs[i]).mean()), oracle.mean_reward(omega)
        to_targets = dist[i].tolist()
        d_model, d_mu = to_targets[i], float(dist[-1, i])
        nearest = min(range(len(omegas)), key=to_targets.__getitem__)
        ok_r = abs(model_r - target_r) <= cfg.tol.reward
        ok_d = nearest == i and d_model <= cfg.tol.mmd_ratio * d_mu
        rows.append(
            {
                "policy": names[i],
                "omega": omega,
                "reward_model": model_r,
                "reward_target": target_r,
                "mmd_model": d_model,
                "mmd_mu": d_mu,
                "mmd_ratio": d_model / max(d_mu, 1e-12),
                "nearest_target": names[nearest],
                "mmd_to_targets": dict(zip(names, to_targets, strict=True)),
                "target_ess": oracle.ess(omega),
                "reward_ok": ok_r,
                "mmd_ok": ok_d,
                "passed": ok_r and ok_d,
            }
        )
        samples[names[i]] = xs[i]
        samples["target " + names[i]] = targets[i]
    return rows, samples


def run_verification(
    cfg: VerifyConfig, progress: bool = True, trained: Trained | None = None
) -> VerifyResult:
    """Train (unless ``trained`` is given), sample every omega, compare with pi*, study weight explosion."""
    start = time.time()
    if trained is None:
        trained = train_policies(cfg, progress)
    elif trained.weights != _weights_mode(cfg.variant):
        raise ValueError(
            f"trained: nets trained with weights={trained.weights!r} cannot run variant {cfg.variant!r}"
        )
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    omegas = (PI_NEG, *cfg.omegas)
    sample_omegas = [-w for w in omegas] if cfg.variant == "swapped_omega" else list(omegas)
    if cfg.variant == "swapped_omega":
        sample_omegas[0] = PI_NEG  # the pi- row is not a guidance sweep: keep it, break only the sweep
    x = sample_dichotomous(
        make_eps_fn(trained.eps_pos, trained.eps_neg),
        (cfg.num_samples, 2),
        sample_omegas,
        trained.scheduler,
        cfg.num_steps,
        generator=gen,
    )
    rows, samples = _compare_with_targets(cfg, trained.oracle, list(x), omegas, gen)
    samples["mu"] = trained.data[: cfg.num_samples]
    rewards = [r["reward_model"] for r in rows]
    monotone = {
        "omegas": list(omegas),
        "reward_model": rewards,
        "reward_target": [r["reward_target"] for r in rows],
        "passed": is_monotone(rewards, cfg.tol.monotone_slack),
    }
    explosion = weight_explosion(
        trained.data,
        trained.adv,
        list(cfg.explosion_betas),
        cfg.bandit.k,
        trained.scheduler,
        clip=cfg.awr_clip,
        seed=cfg.seed,
    )
    exp_check = _explosion_check(explosion, cfg.tol)
    passed = all(r["passed"] for r in rows) and monotone["passed"] and exp_check["passed"]
    return VerifyResult(
        config=dataclasses.asdict(cfg),
        rows=rows,
        monotone=monotone,
        explosion=explosion,
        explosion_check=exp_check,
        train_log=trained.log,
        samples=samples,
        passed=passed,
        seconds=time.time() - start,
    )
