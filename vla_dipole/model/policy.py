"""``DipolePolicy``: one Prismatic backbone, two diffusion heads pi+ (``head_pos``) and pi- (``head_neg``).

Conditioning decision: the heads cross-attend to **all** backbone output tokens (visual patches and
prompt text, after the LLM's final norm) plus one proprio token, rather than to a few learned
action-query tokens appended to the LLM input. Why:
- the backbone stays a plain encoder that runs once per observation; action queries would have to be
  fed through the LLM and would tie the head's interface to the LLM's sequence layout;
- pi+ and pi- can read different evidence from the same tokens (each head has its own projection),
  which is the point of two separately trained policies;
- the per-token key / value projection is done once per observation (``prepare``) and reused over all
  denoising steps, omegas and candidates, so attending to ~T = 256 n_images + L tokens costs little at
  sampling time; the head works at its own width, independent of the 4096-wide LLM.

Sampling follows ``vla_dipole.sampling``: at every step both heads see the same x_t and t in one
branch-batched head call (``head.denoise_branches``), eps = (1 + omega) eps+ - omega eps-, and a vector
of omegas is sampled at once (the omegas ride along the candidate axis of the head).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from vla_dipole.model.backbone import PrismaticBackbone
from vla_dipole.model.checked_safetensors import load_checked, save_checked
from vla_dipole.model.config import CONFIG_FILE, PolicyConfig
from vla_dipole.model.head import (
    DiffusionTrajectoryHead,
    denoise_branches,
    inference_params,
    prepare_branches,
    stack_heads,
)
from vla_dipole.model.lora import copy_adapter, set_active_adapter
from vla_dipole.model.obs_encoder import current_speed
from vla_dipole.model.observation_spec import require_complete
from vla_dipole.model.processor import DrivingProcessor, PolicyInputs, TrajectoryNormalizer
from vla_dipole.sampling import build_scheduler, sample_dichotomous

HEADS_FILE = "heads.safetensors"
BACKBONE_FILE = "backbone.safetensors"
META_FILE = "policy_meta.json"
TOKENIZER_DIR = "tokenizer"
FORMAT_VERSION = 1

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # trajectories [B, M, 8, 3] -> scores [B, M]
# best-of-N by the policy's own pi+ / pi- density ratio (`log_ratio_scores`): pass as `score_fn`
LOG_RATIO = "log_ratio"


@dataclass
class Conditioning:
    """The backbone's output for a batch of observations (computed once, shared by both heads)."""

    tokens: torch.Tensor  # [B, T, D], or [2, B, T, D] with branch-specific LoRA (pos, neg)
    mask: torch.Tensor  # [B, T]
    proprio: torch.Tensor  # [B, P]

    @property
    def batch_size(self) -> int:
        return self.mask.shape[0]

    def branch(self, index: int) -> torch.Tensor:
        """Tokens one head reads."""
        return self.tokens[index] if self.tokens.ndim == 4 else self.tokens


def build_tokenizer(config: PolicyConfig):
    from vla_dipole.model.openvla_checkpoint import load_tokenizer
    from vla_dipole.model.prompt import build_tiny_tokenizer

    if config.tokenizer == "tiny":
        return build_tiny_tokenizer(config.backbone.llm.pad_token_id)
    return load_tokenizer(config.tokenizer, config.backbone.llm.pad_token_id)


class DipolePolicy(nn.Module):
    """Backbone + pi+ / pi- heads + trajectory normaliser; see the module docstring."""

    def __init__(
        self, config: PolicyConfig, tokenizer=None, backbone: PrismaticBackbone | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else PrismaticBackbone(config.effective_backbone())
        d, p = self.backbone.hidden_size, config.observation.proprio_dim
        self.head_pos = DiffusionTrajectoryHead(config.head, d, p)
        self.head_neg = DiffusionTrajectoryHead(config.head, d, p)
        self.normalizer = TrajectoryNormalizer(config.head.horizon, residual=config.action.residual)
        self.processor = DrivingProcessor(config, tokenizer or build_tokenizer(config), self.normalizer)
        dc = config.diffusion
        pred = dc.prediction_type
        self.train_scheduler = build_scheduler("ddpm", dc.num_train_timesteps, dc.beta_schedule, pred)
        self.sample_scheduler = build_scheduler(dc.solver, dc.num_train_timesteps, dc.beta_schedule, pred)

    @classmethod
    def from_config(cls, config: PolicyConfig | str) -> DipolePolicy:
        """A fresh policy from a config or preset name; loads the OpenVLA backbone when one is configured."""
        config = PolicyConfig.preset(config) if isinstance(config, str) else config
        if config.pretrained_backbone is None:
            policy = cls(config)
            if config.backbone_init is not None:
                file = Path(config.backbone_init) / BACKBONE_FILE
                if not file.is_file():
                    raise FileNotFoundError(
                        f"model field 'backbone_init': {file} not found (a python -m vla_dipole.pretrain output)"
                    )
                _load_strict(policy.backbone, load_checked(file), file)
            return policy
        from vla_dipole.model.openvla_checkpoint import from_openvla

        ckpt = from_openvla(config.pretrained_backbone, config_overrides=_backbone_overrides(config))
        return cls(config, tokenizer=ckpt.tokenizer, backbone=ckpt.model)

    # ---- parameters ----------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def device(self) -> torch.device:
        return self.head_pos.out.weight.device

    @torch.no_grad()
    def init_branches_from(self, head: DiffusionTrajectoryHead | Mapping[str, torch.Tensor]) -> None:
        """Copy one (behaviour-cloned) head into both pi+ and pi-."""
        state = head.state_dict() if isinstance(head, nn.Module) else head
        self.head_pos.load_state_dict(state)
        self.head_neg.load_state_dict(state)

    def copy_pos_to_neg(self) -> None:
        """After BC (which trains ``head_pos`` and the "pos" LLM adapter), start pi- as a full copy of pi+."""
        self.init_branches_from(self.head_pos)
        if self.config.branch_lora.enabled:
            pos, neg = self.config.BRANCH_ADAPTERS
            if not copy_adapter(self.backbone, pos, neg):
                raise ValueError("copy_pos_to_neg: branch_lora is enabled but the LLM has no LoRA adapters")

    def set_trajectory_stats(self, stats: Any) -> None:
        self.normalizer.set_stats(stats)

    # ---- encoding --------------------------------------------------------------------------------------
    def encode(self, inputs: Mapping[str, Any] | PolicyInputs) -> Conditioning:
        """Run the backbone once for a batch (raw loader batch or ``PolicyInputs``)."""
        x = self.processor(inputs).to(self.device)
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.backbone.parameters())
        with torch.set_grad_enabled(needs_grad):
            if not self.config.branch_lora.enabled:
                out = self.backbone(x.pixel_values, x.input_ids, x.attention_mask)
                return Conditioning(out.hidden, out.mask, x.proprio.to(out.hidden.dtype))
            # Branch-specific LoRA: the LLM weights differ per branch, so it runs once per adapter.
            outs = []
            for name in self.config.BRANCH_ADAPTERS:
                set_active_adapter(self.backbone, name)
                outs.append(self.backbone(x.pixel_values, x.input_ids, x.attention_mask))
            set_active_adapter(self.backbone, self.config.BRANCH_ADAPTERS[0])
        tokens = torch.stack([o.hidden for o in outs])
        return Conditioning(tokens, outs[0].mask, x.proprio.to(tokens.dtype))

    # ---- training errors ---------------------------------------------------------------------------------
    def _noised(self, actions, noise, timesteps, generator):
        if actions.ndim != 4:
            raise ValueError(f"actions: expected [B, K, horizon, 4], got {tuple(actions.shape)}")
        b, k = actions.shape[:2]
        if noise is None:
            noise = torch.randn(
                actions.shape, generator=generator, device=actions.device, dtype=actions.dtype
            )
        if timesteps is None:
            n = self.train_scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, n, (b, k), generator=generator, device=actions.device)
        timesteps = torch.as_tensor(timesteps, device=actions.device).expand(b, k)
        x_t = self.train_scheduler.add_noise(actions.flatten(0, 1), noise.flatten(0, 1), timesteps.flatten())
        return x_t.view_as(actions), self._target(actions, noise, timesteps), timesteps

    def _target(self, actions: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the heads regress (``diffusion.prediction_type``): the noise, v, or the clean actions."""
        kind = self.config.diffusion.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return actions
        v = self.train_scheduler.get_velocity(actions.flatten(0, 1), noise.flatten(0, 1), timesteps.flatten())
        return v.view_as(actions)

    def branch_errors(
        self,
        cond: Conditioning,
        actions: torch.Tensor,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample MSE of pi+ and pi- on the same noised actions [B, K, 8, 4]: ([B, K], [B, K]).

        The regression target is ``diffusion.prediction_type``'s (eps, v or x0; "eps" below).

        K candidates per observation share its conditioning; both heads run in one batched call. The
        DIPOLE weights w+ / w- (``vla_dipole.losses``) multiply these outside.
        """
        x_t, target, timesteps = self._noised(actions, noise, timesteps, generator)
        heads = (self.head_pos, self.head_neg)
        params = stack_heads(heads)
        memory = prepare_branches(self.head_pos, params, cond.tokens, cond.mask, cond.proprio)
        eps = denoise_branches(self.head_pos, params, x_t, timesteps, memory)
        err = (eps - target.unsqueeze(0)).pow(2).mean(dim=(-1, -2))
        return err[0], err[1]

    def bc_error(
        self,
        cond: Conditioning,
        actions: torch.Tensor,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Behaviour cloning: per-sample MSE [B, K] of ``head_pos`` alone."""
        x_t, target, timesteps = self._noised(actions, noise, timesteps, generator)
        eps = self.head_pos(x_t, timesteps, cond.branch(0), cond.mask, cond.proprio)  # pos adapter tokens
        return (eps - target).pow(2).mean(dim=(-1, -2))

    # ---- sampling -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        inputs: Mapping[str, Any] | PolicyInputs | Conditioning,
        omegas: Sequence[float],
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        best_of: int = 1,
        score_fn: ScoreFn | str | None = None,
        branch: str | None = None,
        ratio_probes: int = 8,
        num_samples: int = 1,
    ) -> torch.Tensor:
        """Trajectories [B, len(omegas), 8, 3] (local x, y, heading); [B, len(omegas), N, 8, 3] with
        ``num_samples = N > 1`` independent draws (each its own start noise; every omega of one draw
        shares it, so repeating an omega never gives a second sample).

        ``best_of = N`` draws N samples per observation and omega and keeps the one ``score_fn``
        (trajectories [B, M, 8, 3] -> scores [B, M]) rates highest; ``score_fn=LOG_RATIO`` rates them by
        ``log_ratio_scores`` (``ratio_probes`` noise levels), DIPOLE's own critic. ``branch="pos"`` / ``"neg"`` samples
        one head alone (omegas are then ignored but set the output size); an omega = 0 row reproduces
        ``branch="pos"`` bit for bit, alone or inside a sweep (with a deterministic solver).
        """
        if best_of < 1 or num_samples < 1:
            raise ValueError(f"best_of={best_of}, num_samples={num_samples}: expected >= 1")
        if best_of > 1 and num_samples > 1:
            raise ValueError("best_of and num_samples: set one of them (keep one of N, or keep all N)")
        if best_of > 1 and score_fn is None:
            raise ValueError("best_of > 1 needs a score_fn (trajectories [B, M, 8, 3] -> scores [B, M])")
        omegas = [float(w) for w in omegas]
        cond = inputs if isinstance(inputs, Conditioning) else self.encode(inputs)
        if branch not in (None, "pos", "neg"):
            raise ValueError(f"branch={branch!r}: expected None, 'pos' or 'neg'")
        b, n_om = cond.batch_size, len(omegas)
        horizon, adim = self.config.head.horizon, self.config.head.action_dim
        steps = num_steps or self.config.diffusion.num_inference_steps
        dtype = self.head_pos.out.weight.dtype
        draws = max(best_of, num_samples)
        noise = randn_tensor((b, draws, horizon, adim), generator=generator, device=self.device, dtype=dtype)
        noise = noise * self.config.diffusion.temperature
        if branch is not None:
            actions = self._denoise(
                cond, [1 if branch == "neg" else 0], [0.0] * n_om, noise, steps, generator
            )
        else:
            # omega = 0 rows run pi+ alone with the shapes of a lone omega = 0 call, so they equal it bit
            # for bit inside any sweep (a batched call with more rows may round differently)
            zero = [i for i, w in enumerate(omegas) if w == 0.0]
            rest = [i for i, w in enumerate(omegas) if w != 0.0]
            parts = {}
            if zero:
                parts[tuple(zero)] = self._denoise(cond, [0], [0.0], noise, steps, generator)
            if rest:
                parts[tuple(rest)] = self._denoise(
                    cond, [0, 1], [omegas[i] for i in rest], noise, steps, generator
                )
            actions = torch.empty(n_om, *noise.shape, dtype=dtype, device=noise.device)
            for rows, part in parts.items():
                actions[list(rows)] = part
        # actions [O, B, N, L, 4]
        speed = current_speed(cond.proprio, self.config.observation.ego_history)
        traj = self.normalizer.denormalize(actions.float().permute(1, 0, 2, 3, 4), speed)  # [B, O, N, L, 3]
        if num_samples > 1:
            return traj
        if best_of == 1:
            return traj[:, :, 0]
        if score_fn == LOG_RATIO:
            flat = actions.permute(1, 0, 2, 3, 4).reshape(b, n_om * best_of, horizon, adim)
            scores = self.log_ratio_scores(cond, flat, ratio_probes, generator)
        elif callable(score_fn):
            scores = torch.as_tensor(
                score_fn(traj.reshape(b, n_om * best_of, horizon, 3)), device=traj.device
            )
        else:
            raise ValueError(f"score_fn={score_fn!r}: expected a callable or {LOG_RATIO!r}")
        if scores.shape != (b, n_om * best_of):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected {(b, n_om * best_of)}")
        best = scores.reshape(b, n_om, best_of).argmax(dim=-1)
        return traj.gather(2, best[:, :, None, None, None].expand(b, n_om, 1, horizon, 3)).squeeze(2)

    @torch.no_grad()
    def log_ratio_scores(
        self,
        cond: Conditioning,
        actions: torch.Tensor,
        probes: int = 8,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """log pi+(a) - log pi-(a) of normalised actions [B, M, L, A], up to a per-observation constant: [B, M].

        DIPOLE fits pi+ ∝ mu·sigmoid(beta A + k) and pi- ∝ mu·(1 - sigmoid(beta A + k)), so their ratio is
        exp(beta A + k) / Z(s): the two heads hold an advantage estimate for free, with no critic to train.
        Each log density is read through its denoising ELBO: the difference of the heads' errors at
        ``probes`` noise levels spread over the schedule, with the same noise for every candidate and
        both heads (common random numbers: the estimate's noise cancels in the comparison). Equal heads
        (pi- just copied from pi+) give 0 everywhere, so the pick is the first sample; a BC policy's
        untrained pi- makes the scores meaningless (use consensus there).
        """
        if probes < 1:
            raise ValueError(f"ratio_probes={probes}: expected >= 1")
        b, m, horizon, adim = actions.shape
        n = self.train_scheduler.config.num_train_timesteps
        t = ((torch.arange(probes, device=actions.device) + 0.5) * n / probes).long().clamp(max=n - 1)
        noise = randn_tensor(
            (b, 1, probes, horizon, adim), generator=generator, device=self.device, dtype=actions.dtype
        )
        noise = noise.expand(b, m, probes, horizon, adim).reshape(b, m * probes, horizon, adim)
        x = actions[:, :, None].expand(b, m, probes, horizon, adim).reshape(b, m * probes, horizon, adim)
        err_pos, err_neg = self.branch_errors(cond, x, noise, t.repeat(m)[None])
        return (err_neg - err_pos).float().reshape(b, m, probes).mean(dim=-1)

    def _denoise(
        self,
        cond: Conditioning,
        idx: list[int],
        omegas: list[float],
        noise: torch.Tensor,
        num_steps: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Normalised actions [O, B, N, L, 4] from heads ``idx`` (0 = pi+, 1 = pi-) and start ``noise``."""
        heads = [(self.head_pos, self.head_neg)[i] for i in idx]
        params = inference_params(stack_heads(heads))  # laid out once, reused by every step
        tokens = cond.tokens[idx] if cond.tokens.ndim == 4 else cond.tokens
        memory = prepare_branches(self.head_pos, params, tokens, cond.mask, cond.proprio)
        b, best_of, horizon, adim = noise.shape
        n_om = len(omegas)

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # x [O, B, N, L, 4] -> candidates axis [B, O * N, L, 4]
            xc = x.permute(1, 0, 2, 3, 4).reshape(b, n_om * best_of, horizon, adim)
            eps = denoise_branches(self.head_pos, params, xc, t, memory)
            eps = eps.reshape(len(idx), b, n_om, best_of, horizon, adim).permute(0, 2, 1, 3, 4, 5)
            return eps[0], eps[-1]

        return sample_dichotomous(
            eps_fn,
            noise.shape,
            omegas,
            self.sample_scheduler,
            num_steps,
            generator=generator,
            init_noise=noise,
        )

    # ---- save / load ----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """config YAML + safetensors (heads and normaliser; backbone weights / adapters) + tokenizer files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save_yaml(directory / CONFIG_FILE)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        heads = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        save_checked(heads, directory / HEADS_FILE, {"format": "vla-dipole", "version": str(FORMAT_VERSION)})
        backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        # From an OpenVLA checkpoint: store only what training changed; the rest is in the checkpoint.
        if self.config.pretrained_backbone is not None:
            changed = {n for n, p in self.backbone.named_parameters() if p.requires_grad}
            backbone = {k: v for k, v in backbone.items() if k in changed}
        save_checked(backbone, directory / BACKBONE_FILE, {"format": "vla-dipole"})
        self.processor.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
        meta = {
            "format_version": FORMAT_VERSION,
            "backbone_complete": self.config.pretrained_backbone is None,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> DipolePolicy:
        directory = Path(directory)
        for name in (CONFIG_FILE, HEADS_FILE, BACKBONE_FILE, META_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name}: missing (not a save_pretrained directory?)")
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory / META_FILE}: format_version {meta.get('format_version')}, expected {FORMAT_VERSION}"
            )
        require_complete(directory / CONFIG_FILE)
        config = PolicyConfig.from_yaml(directory / CONFIG_FILE)
        from vla_dipole.model.openvla_checkpoint import load_tokenizer

        tokenizer = load_tokenizer(directory / TOKENIZER_DIR, config.backbone.llm.pad_token_id)
        if meta["backbone_complete"]:
            policy = cls(config, tokenizer=tokenizer)
        else:
            policy = cls.from_config(config)
            policy.processor.tokenizer = tokenizer
        _load_strict(policy, load_checked(directory / HEADS_FILE), directory / HEADS_FILE)
        _load_strict(
            policy.backbone,
            load_checked(directory / BACKBONE_FILE),
            directory / BACKBONE_FILE,
            partial=not meta["backbone_complete"],
        )
        return policy.to(device)


def _backbone_overrides(config: PolicyConfig) -> dict[str, Any]:
    """The trainability fields of the policy config's backbone section, applied over the checkpoint's sizes."""
    bb = config.effective_backbone().to_dict()
    keys = (
        "lora",
        "vision_mode",
        "freeze_projector",
        "freeze_llm",
        "gradient_checkpointing",
        "bf16_autocast",
        "attn_implementation",
        "prune_unused_vision",
    )
    return {k: bb[k] for k in keys}


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], file: Path, partial: bool = False):
    own = module.state_dict()
    if module.__class__ is DipolePolicy:
        own = {k: v for k, v in own.items() if not k.startswith("backbone.")}
    unexpected = sorted(set(state) - set(own))
    missing = [] if partial else sorted(set(own) - set(state))
    bad = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if unexpected or missing or bad:
        raise ValueError(
            f"{file}: does not match the model built from its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {bad[:5]}"
        )
    module.load_state_dict(state, strict=False)
