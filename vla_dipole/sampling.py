"""Dichotomous diffusion sampling: eps = (1 + omega) * eps+ - omega * eps- at every step.

DIPOLE's inference rule (paper Eq. 10) combines the reward-maximising noise predictor eps+ and the
reward-minimising eps- like classifier-free guidance with scale 1 + omega. This module is the one
place that does it, over any diffusers scheduler, so the policy and the 2-D bandit proof share it.

Guarantees (tested):
- both branches see the same x_t and t at every step (``eps_fn`` gets one tensor for both);
- every omega row starts from the same initial noise (a sweep compares like with like);
- omega = 0 reproduces sampling eps+ alone bit for bit: (1 + 0) * a - 0 * b == a exactly.
With a stochastic solver (DDPM, DDIM eta > 0, SDE DPM-Solver) the per-step noise is drawn by diffusers
for the whole [O, *shape] tensor, so rows then differ in that noise; the deterministic defaults
(DDIM eta = 0, DPM-Solver++) have none.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

EpsFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

SOLVERS: dict[str, type[SchedulerMixin]] = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
}


# DPM-Solver++ starts at the first timestep whose half-log-SNR lambda = log(alpha / sigma) is above
# this (t = 95 of the 100-step cosine schedule, alpha ~ 0.05). diffusers' default (-inf) starts at t = 99,
# where alpha ~ 5e-4 and a 2 % error of the predicted noise moves the sample by metres; the -5.1 often
# quoted for the cosine schedule (t = 98) still amplifies it ~5x. tests/model_policy/test_sampler_accuracy.py
# measures this with a predictor of known error.
DPM_LAMBDA_MIN = -3.0


def build_scheduler(
    solver: str = "ddim",
    num_train_timesteps: int = 100,
    beta_schedule: str = "squaredcos_cap_v2",
    prediction_type: str = "epsilon",
    **overrides,
) -> SchedulerMixin:
    """A diffusers scheduler sharing one noise schedule between training and inference.

    Clipping is off because normalised actions are standardised, not bounded in [-1, 1].
    """
    if solver not in SOLVERS:
        raise ValueError(f"diffusion solver {solver!r} unknown: expected one of {sorted(SOLVERS)}")
    kwargs: dict = dict(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
    )
    if solver in ("ddpm", "ddim"):
        kwargs["clip_sample"] = False
    # Few-step DDIM starts one stride below the last training step ("leading" spacing): with
    # squaredcos_cap_v2 the last step has alpha_bar ~ 2e-7, where the eps -> x0 conversion multiplies a
    # learned eps's error by 1/sqrt(alpha_bar) ~ 2000 and a trained policy's samples explode (km-long
    # trajectories); one stride lower the factor is ~7 and x_T ~ N(0, I) is still a close match.
    if solver == "ddim":
        kwargs["timestep_spacing"] = "leading"
        kwargs["set_alpha_to_one"] = True
    # Few-step ancestral DDPM with the posterior variance (fixed_small) under-disperses (std -21 % at
    # 10 steps on a unit-scale Gaussian): a stride of 10 steps leaves x0 uncertain, which fixed_large
    # (the beta of the whole stride) covers; at 50 steps both agree.
    if solver == "ddpm":
        kwargs["variance_type"] = "fixed_large"
    if solver == "dpmsolver++":
        kwargs.update(
            algorithm_type="dpmsolver++",
            solver_order=2,
            lower_order_final=True,
            final_sigmas_type="zero",
            lambda_min_clipped=DPM_LAMBDA_MIN,
        )
    kwargs.update(overrides)
    return SOLVERS[solver](**kwargs)


def combine_eps(eps_pos: torch.Tensor, eps_neg: torch.Tensor, omegas: torch.Tensor) -> torch.Tensor:
    """(1 + omega) eps+ - omega eps-, with omega broadcast over the leading (omega) dim."""
    w = omegas.to(eps_pos.dtype).view(-1, *([1] * (eps_pos.dim() - 1)))
    return (1 + w) * eps_pos - w * eps_neg


@torch.no_grad()
def sample_dichotomous(
    eps_fn: EpsFn,
    shape: Sequence[int],
    omegas: Sequence[float] | torch.Tensor,
    scheduler: SchedulerMixin,
    num_steps: int,
    generator: torch.Generator | None = None,
    init_noise: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sample x_0 for every omega at once; returns [O, *shape].

    ``eps_fn(x_t [O, *shape], t) -> (eps_pos, eps_neg)`` evaluates both branches (ideally in one
    batched call). ``scheduler`` is only read: a fresh copy with the same config holds the solver state,
    so one scheduler object can be reused across calls and threads.
    """
    omegas_t = torch.as_tensor(omegas, dtype=torch.float32).flatten()
    if omegas_t.numel() == 0:
        raise ValueError("sample_dichotomous: omegas is empty, expected at least one value")
    if num_steps < 1:
        raise ValueError(f"sample_dichotomous: num_steps={num_steps}, expected >= 1")
    shape = tuple(int(s) for s in shape)
    if init_noise is None:
        init_noise = randn_tensor(
            shape, generator=generator, device=torch.device(device or "cpu"), dtype=dtype
        )
    elif tuple(init_noise.shape) != shape:
        raise ValueError(
            f"sample_dichotomous: init_noise has shape {tuple(init_noise.shape)}, expected {shape}"
        )
    omegas_t = omegas_t.to(init_noise.device)
    sched = type(scheduler).from_config(scheduler.config)
    sched.set_timesteps(num_steps, device=init_noise.device)
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}

    n_omega = omegas_t.numel()
    x = (init_noise * sched.init_noise_sigma).unsqueeze(0).expand(n_omega, *shape).contiguous()
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        eps_pos, eps_neg = eps_fn(x_in, t)
        eps = combine_eps(eps_pos, eps_neg, omegas_t)
        x = sched.step(eps, t, x, **step_kwargs).prev_sample
    return x
