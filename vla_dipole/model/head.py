"""``DiffusionTrajectoryHead``: an eps-predicting transformer over the future waypoint tokens.

One token per future pose (x, y, cos yaw, sin yaw, normalised). Each block: adaLN-modulated
self-attention among the waypoints of one candidate (timestep + proprio conditioning, DiT style),
cross-attention to the memory (the proprio token + all backbone tokens, projected to the head width),
and an adaLN-modulated MLP.

Branch batching. pi+ and pi- are two heads with separate parameters, yet DIPOLE evaluates both at
every denoising step. The forward is therefore written once, over parameters stacked on a leading
*branch* dim E (``stack_heads``): every linear is one ``baddbmm`` over E, so both branches cost one
batched call (``torch.func.vmap`` was ~2.5x slower on CPU and not bit-exact). A single head runs the
same code with E = 1 (its parameters unsqueezed, no copy), which is what makes omega = 0 equal pi+
alone bit for bit.

Caching. The memory does not depend on x_t or t, so ``prepare_branches`` projects it to per-layer
keys / values once per observation; every denoising step, omega and candidate reuses them.
Candidates of one observation share that memory without copying it: cross-attention runs with
queries [B, heads, K * horizon, d] against keys [B, heads, T, d]. Likewise the adaLN conditioning
c = temb(t) + proprio depends only on (branch, observation, t): with one t per observation (sampling)
the time embedding and all adaLN projections run on B rows and broadcast over the K candidates.
``inference_params`` lays the stacked weights out once per ``sample()`` call as contiguous
[E, in, out] (CPU), which the batched GEMM reads faster than a transposed view.

Cost. Both branches read twice the weight bytes and do twice the FLOPs per step; batching them
removes only the per-op overhead of a second call. So both-batched ~= one where that overhead binds
(small heads, GPUs) and ~2x where weight streaming or FLOPs bind (the CPU rows of
``benchmarks/policy.py``; docs/model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from vla_dipole.model.config import HeadConfig
from vla_dipole.model.obs_encoder import ProprioEncoder

Params = dict[str, torch.Tensor]  # parameter name -> [E, *shape] (``inference_params``: + ``.weight_t``)


class HeadMemory(NamedTuple):
    """Per-observation cache from ``prepare_branches`` (leading dim E = branches)."""

    keys: tuple[torch.Tensor, ...]  # depth x [E, B, heads, T + 1, d]
    values: tuple[torch.Tensor, ...]
    mask: torch.Tensor  # [B, 1, 1, T + 1] bool, True = attend
    cond: torch.Tensor  # [E, B, width] proprio embedding (global conditioning)


class DiffusionTrajectoryHead(nn.Module):
    """eps_theta(x_t, t | backbone tokens, proprio) for x_t [B, K, horizon, 4].

    The submodules only hold (and initialise) the parameters; the computation is in the branch-batched
    functions below so that one head and a stack of heads share one code path.
    """

    def __init__(self, cfg: HeadConfig, cond_dim: int, proprio_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.cond_dim, self.proprio_dim = cond_dim, proprio_dim
        w, hidden = cfg.width, int(cfg.width * cfg.mlp_ratio)
        self.cond_proj = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, w))
        self.proprio = ProprioEncoder(proprio_dim, w)
        self.time_proj = Timesteps(w, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(w, w)
        self.in_proj = nn.Linear(cfg.action_dim, w)
        self.pos_embed = nn.Parameter(torch.randn(cfg.horizon, w) * 0.02)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                dict(
                    qkv=nn.Linear(w, 3 * w),
                    proj=nn.Linear(w, w),
                    norm_x=nn.LayerNorm(w),
                    q_cross=nn.Linear(w, w),
                    kv_cross=nn.Linear(w, 2 * w),
                    proj_cross=nn.Linear(w, w),
                    mlp_in=nn.Linear(w, hidden),
                    mlp_out=nn.Linear(hidden, w),
                    ada=nn.Linear(w, 6 * w),
                )
            )
            for _ in range(cfg.depth)
        )
        self.ada_out = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, cfg.action_dim)

    def name_of(self, module: nn.Module) -> str:
        """The parameter-name prefix of a submodule: the key the branch-batched functions read it by.

        Resolved from the module objects (cached per head), so renaming an attribute fails loudly at
        the attribute access instead of reading a stale string key.
        """
        names = self.__dict__.get("_module_names")
        if names is None or module not in names:  # first call, or a submodule was replaced since
            # a deepcopy carries the cache over with its keys mapped to the copied modules
            names = {m: n for n, m in self.named_modules()}
            self.__dict__["_module_names"] = names
        return names[module]

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        proprio: torch.Tensor,
    ) -> torch.Tensor:
        """One-shot eps prediction [B, K, horizon, 4] (training)."""
        p = stack_heads([self])
        return denoise_branches(self, p, x_t, timesteps, prepare_branches(self, p, tokens, mask, proprio))[0]


def stack_heads(heads: Sequence[DiffusionTrajectoryHead]) -> Params:
    """Parameters of identically-shaped heads stacked on a new leading dim (views when only one)."""
    named = [dict(h.named_parameters()) for h in heads]
    if len(named) == 1:
        return {k: v.unsqueeze(0) for k, v in named[0].items()}
    return {k: torch.stack([n[k] for n in named]) for k in named[0]}


def inference_params(p: Params) -> Params:
    """Stacked parameters laid out for many no-grad head calls (sampling): once per ``sample()`` call.

    On CPU every linear weight [E, out, in] is replaced by a contiguous [E, in, out] copy
    (``<name>.weight_t``), which the MKL batched GEMM reads up to ~15 % faster than the transposed view.
    E = 1 and E = 2 get the same layout, so omega = 0 still equals pi+ alone bit for bit. On CUDA the
    transposed view costs nothing, so the parameters are returned as they are (no copy of a 7B head).
    """
    if next(iter(p.values())).device.type == "cuda":
        return p
    out = {}
    for k, v in p.items():
        if k.endswith(".weight") and v.ndim == 3:  # a linear's weight (norms' are [E, W])
            out[f"{k}_t"] = v.transpose(1, 2).contiguous()
        else:
            out[k] = v
    return out


# ---- branch-batched primitives: x [E, ..., in] with parameters [E, ...] ---------------------------
def _linear(p: Params, name: str, x: torch.Tensor) -> torch.Tensor:
    b = p[f"{name}.bias"]
    w_t = p.get(f"{name}.weight_t")  # [E, in, out] from ``inference_params``
    if w_t is None:
        w_t = p[f"{name}.weight"].transpose(1, 2)
    e, lead = b.shape[0], x.shape[1:-1]
    out = torch.baddbmm(b.unsqueeze(1), x.reshape(e, -1, x.shape[-1]), w_t)
    return out.reshape(e, *lead, b.shape[1])


def _branches_and_dtype(p: Params) -> tuple[int, torch.dtype]:
    """Number of stacked branches E and the parameters' dtype (all parameters share both)."""
    first = next(iter(p.values()))
    return first.shape[0], first.dtype


def _per_branch(x: torch.Tensor, e: int) -> torch.Tensor:
    """An input shared by all branches, given the leading branch dim (a view)."""
    return x.unsqueeze(0).expand(e, *x.shape)


def _bcast(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """[E, W] -> [E, 1, ..., 1, W] with ``ndim`` dims in total."""
    return t.reshape(t.shape[0], *([1] * (ndim - 2)), t.shape[-1])


def _layer_norm(p: Params | None, name: str | None, x: torch.Tensor) -> torch.Tensor:
    y = F.layer_norm(x, (x.shape[-1],))
    if p is None:
        return y
    w, b = p[f"{name}.weight"], p[f"{name}.bias"]
    return y * _bcast(w, y.ndim) + _bcast(b, y.ndim)


def _sequential(
    head: DiffusionTrajectoryHead, p: Params, seq: nn.Sequential, x: torch.Tensor
) -> torch.Tensor:
    """``seq`` applied to x [E, ..., in] with the branch-stacked parameters, layer by layer."""
    for layer in seq:
        if isinstance(layer, nn.Linear):
            x = _linear(p, head.name_of(layer), x)
        elif isinstance(layer, nn.LayerNorm):
            x = _layer_norm(p, head.name_of(layer), x)
        elif not any(True for _ in layer.parameters()):
            x = layer(x)  # an activation: elementwise, so the branch dim rides along
        else:
            raise TypeError(f"head: no branch-batched form of {type(layer).__name__} in {head.name_of(seq)}")
    return x


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:  # [..., L, W] -> [..., heads, L, W/heads]
    return x.unflatten(-1, (n_heads, -1)).transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-3, -2).flatten(-2)


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None, dropout: float = 0.0
) -> torch.Tensor:
    """SDPA over arbitrary leading dims (flattened to one batch dim)."""
    lead = q.shape[:-3]
    q, k, v = (t.reshape(-1, *t.shape[-3:]) for t in (q, k, v))
    if mask is not None:
        mask = mask.expand(*lead, *mask.shape[-3:]).reshape(-1, *mask.shape[-3:])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout).reshape(
        *lead, *q.shape[-3:]
    )


# ---- the head, batched over branches ---------------------------------------------------------------
def prepare_branches(
    head: DiffusionTrajectoryHead, p: Params, tokens: torch.Tensor, mask: torch.Tensor, proprio: torch.Tensor
) -> HeadMemory:
    """Backbone tokens [B, T, D] (shared) or [E, B, T, D] (per branch), mask [B, T], proprio [B, P]."""
    if tokens.shape[-1] != head.cond_dim:
        raise ValueError(f"backbone tokens: last dim {tokens.shape[-1]}, the head expects {head.cond_dim}")
    if proprio.shape[-1] != head.proprio_dim:
        raise ValueError(f"proprio: last dim {proprio.shape[-1]}, the head expects {head.proprio_dim}")
    n_heads, e, dtype = head.cfg.num_heads, *_branches_and_dtype(p)
    if tokens.ndim == 3:
        tokens = _per_branch(tokens, e)
    elif tokens.ndim != 4 or tokens.shape[0] != e:
        raise ValueError(f"backbone tokens: expected [B, T, D] or [{e}, B, T, D], got {tuple(tokens.shape)}")
    ptok = _sequential(head, p, head.proprio.net, _per_branch(proprio.to(dtype), e))
    mem = _sequential(head, p, head.cond_proj, tokens.to(dtype))
    memory = torch.cat([ptok.unsqueeze(2), mem], dim=2)  # [E, B, T + 1, W]
    full_mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1).bool()[:, None, None, :]
    keys, values = [], []
    for block in head.blocks:
        k, v = _linear(p, head.name_of(block["kv_cross"]), memory).chunk(2, dim=-1)
        keys.append(_split_heads(k, n_heads).contiguous())  # so every step's SDPA reads them without a copy
        values.append(_split_heads(v, n_heads).contiguous())
    return HeadMemory(tuple(keys), tuple(values), full_mask, ptok)


def _time_conditioning(
    head: DiffusionTrajectoryHead, p: Params, timesteps: torch.Tensor, memory: HeadMemory, b: int, n_cand: int
) -> torch.Tensor:
    """c = time embedding + proprio embedding: [E, B, K, W], or [E, B, 1, W] for a per-observation t.

    c depends only on (branch, observation, t). With a scalar / [B] / [B, 1] timestep (sampling) it is
    computed once per observation and broadcast over the K candidates, so the time embedding and every
    adaLN projection run on B rows instead of B * K; a [B, K] timestep (training) keeps one row per candidate.
    """
    t = torch.as_tensor(timesteps, device=memory.cond.device)
    if t.ndim > 2 or (t.ndim == 2 and t.shape[1] not in (1, n_cand)):
        raise ValueError(f"timesteps: expected a scalar, [B], [B, 1] or [B, {n_cand}], got {tuple(t.shape)}")
    rows = n_cand if t.ndim == 2 and t.shape[1] == n_cand and n_cand > 1 else 1
    t = t.reshape(*t.shape[:1], -1) if t.ndim else t.reshape(1, 1)
    t = t.expand(b, rows)
    e = memory.cond.shape[0]
    temb = _per_branch(head.time_proj(t.reshape(-1)).to(memory.cond.dtype), e)
    te = head.time_embed
    temb = _linear(p, head.name_of(te.linear_2), te.act(_linear(p, head.name_of(te.linear_1), temb)))
    return temb.unflatten(1, (b, rows)) + memory.cond.unsqueeze(2)


def denoise_branches(
    head: DiffusionTrajectoryHead, p: Params, x_t: torch.Tensor, timesteps: torch.Tensor, memory: HeadMemory
) -> torch.Tensor:
    """x_t [B, K, horizon, 4] (shared by the branches), timesteps scalar / [B] / [B, K] -> eps [E, B, K, horizon, 4]."""
    cfg = head.cfg
    b, n_cand, length = x_t.shape[:3]
    if length != cfg.horizon or x_t.shape[-1] != cfg.action_dim:
        raise ValueError(f"x_t: expected [B, K, {cfg.horizon}, {cfg.action_dim}], got {tuple(x_t.shape)}")
    dropout = cfg.dropout if head.training else 0.0
    e, w, n_heads = _branches_and_dtype(p)[0], cfg.width, cfg.num_heads
    c = _time_conditioning(head, p, timesteps, memory, b, n_cand).unsqueeze(3)  # [E, B, K or 1, 1, W]
    x = _per_branch(x_t.to(c.dtype), e)
    h = _linear(p, head.name_of(head.in_proj), x) + p["pos_embed"][:, None, None]  # [E, B, K, L, W]
    for i, block in enumerate(head.blocks):
        name = {key: head.name_of(layer) for key, layer in block.items()}
        sh1, sc1, g1, sh2, sc2, g2 = _linear(p, name["ada"], F.silu(c)).chunk(6, dim=-1)
        qkv = _split_heads(_linear(p, name["qkv"], _modulate(_layer_norm(None, None, h), sh1, sc1)), n_heads)
        q, k, v = qkv.chunk(3, dim=-1)
        h = h + g1 * _linear(p, name["proj"], _merge_heads(_attention(q, k, v, dropout=dropout)))
        q = _split_heads(
            _linear(p, name["q_cross"], _layer_norm(p, name["norm_x"], h)).reshape(e, b, -1, w), n_heads
        )
        att = _attention(q, memory.keys[i], memory.values[i], memory.mask, dropout)
        h = h + _linear(p, name["proj_cross"], _merge_heads(att)).reshape(h.shape)
        mlp = _linear(p, name["mlp_in"], _modulate(_layer_norm(None, None, h), sh2, sc2))
        h = h + g2 * _linear(p, name["mlp_out"], F.gelu(mlp, approximate="tanh"))
    shift, scale = _linear(p, head.name_of(head.ada_out), F.silu(c)).chunk(2, dim=-1)
    return _linear(p, head.name_of(head.out), _modulate(_layer_norm(None, None, h), shift, scale))
