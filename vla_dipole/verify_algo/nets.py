"""Small timestep-conditioned noise predictors and their DIPOLE training on the bandit's mu samples.

The training step is the driving model's recipe at toy size: diffusers noise schedule, per-sample
squared errors of two *independent* eps-nets, weights from :mod:`vla_dipole.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.training_utils import EMAModel
from torch import Tensor, nn
from tqdm.auto import tqdm

from vla_dipole import losses


class EpsMLP(nn.Module):
    """eps(x_t, t) for 2-D actions: sinusoidal timestep embedding + an MLP (``depth`` x ``width``)."""

    def __init__(
        self,
        dim: int = 2,
        width: int = 128,
        depth: int = 3,
        temb_dim: int = 64,
        num_train_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        # the sinusoidal embedding's frequencies are laid out for t in [0, 1000)
        self.t_scale = 1000.0 / num_train_timesteps
        self.time_proj = Timesteps(temb_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(temb_dim, temb_dim)
        layers: list[nn.Module] = []
        in_dim = dim + temb_dim
        for _ in range(depth):
            layers += [nn.Linear(in_dim, width), nn.SiLU()]
            in_dim = width
        layers.append(nn.Linear(in_dim, dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        lead = x.shape[:-1]
        t = torch.as_tensor(t, device=x.device).expand(lead).reshape(-1) * self.t_scale
        temb = self.time_embed(self.time_proj(t).to(x.dtype))
        return self.mlp(torch.cat([x.reshape(-1, x.shape[-1]), temb], dim=-1)).reshape(x.shape)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 256
    lr: float = 5e-3
    ema_decay: float = 0.995  # evaluated nets are an EMA of the weights: less sampling noise per step
    width: int = 128
    depth: int = 3
    weights: str = "dipole"  # "dipole" | "same" (the broken variant w- = w+)


def train_dichotomous(
    actions: Tensor,
    adv: Tensor,
    beta: float,
    k: float,
    scheduler: SchedulerMixin,
    cfg: TrainConfig,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> tuple[EpsMLP, EpsMLP, list[dict[str, float]]]:
    """Train eps+ and eps- on ``actions`` [N, 2] (samples of mu) with advantages ``adv`` [N].

    Returns both nets and a short loss log. ``cfg.weights == "same"`` trains eps- with w+ as well: a
    deliberately wrong variant the proof must reject.
    """
    if cfg.weights not in ("dipole", "same"):
        raise ValueError(f"TrainConfig.weights: expected 'dipole' or 'same', got {cfg.weights!r}")
    n_train = scheduler.config.num_train_timesteps
    eps_pos = EpsMLP(width=cfg.width, depth=cfg.depth, num_train_timesteps=n_train)
    eps_neg = EpsMLP(width=cfg.width, depth=cfg.depth, num_train_timesteps=n_train)
    # Same initial weights, as the driving model's two LoRA heads (both start at the base model): the
    # heads' fit errors are then correlated, so their difference, which omega amplifies, is cleaner.
    eps_neg.load_state_dict(eps_pos.state_dict())
    params = [*eps_pos.parameters(), *eps_neg.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched_lr = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.05)
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True)
    w_pos_all, w_neg_all = losses.dipole_weights(adv, beta, k)
    if cfg.weights == "same":
        w_neg_all = w_pos_all
    log: list[dict[str, float]] = []
    for step in tqdm(
        range(cfg.steps), desc=f"train eps+/eps- ({cfg.weights})", disable=not progress, mininterval=2
    ):
        idx = torch.randint(actions.shape[0], (cfg.batch_size,), generator=generator)
        x0 = actions[idx]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(n_train, (cfg.batch_size,), generator=generator)
        x_t = scheduler.add_noise(x0, noise, t)
        err_pos = ((eps_pos(x_t, t) - noise) ** 2).sum(-1)
        err_neg = ((eps_neg(x_t, t) - noise) ** 2).sum(-1)
        loss, stats = losses.dichotomous_loss(err_pos, err_neg, w_pos_all[idx], w_neg_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched_lr.step()
        ema.step(params)
        if step % max(1, cfg.steps // 20) == 0 or step == cfg.steps - 1:
            log.append({"step": step, **{key: float(stats[key]) for key in ("loss", "loss_pos", "loss_neg")}})
    ema.copy_to(params)
    return eps_pos.eval().requires_grad_(False), eps_neg.eval().requires_grad_(False), log


def make_eps_fn(eps_pos: nn.Module, eps_neg: nn.Module):
    """The ``eps_fn(x_t, t) -> (eps+, eps-)`` that :func:`vla_dipole.sampling.sample_dichotomous` calls."""

    def eps_fn(x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return eps_pos(x_t, t), eps_neg(x_t, t)

    return eps_fn
