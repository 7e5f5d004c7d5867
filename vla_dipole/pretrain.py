"""Pretrain the tiny backbone on the synthetic world, like a real VLA's pretraining, in one command.

    python -m vla_dipole.pretrain --shards shards/ --model demo --out runs/pretrain [--steps 400] [--seed 0]

A random tiny backbone cannot see the road: BC on its frozen features imitated the logged driver no
better than constant velocity. This stage trains the whole backbone (both ViTs, the projector and the
2-layer Llama) on the training shards' scenes, reading the same inputs the policy reads (front camera,
prompt with command and speed, ego state), to regress two targets through a small read-out that is
thrown away afterwards:

- **the road ahead** (perception, from the world's map): the route lane's centreline in the ego frame
  at 0, 5, ..., 40 m of arc length (lateral offset and heading), the lane the PDM scorer follows;
- **the logged future** (the driving task): the normalised deviation from constant velocity, the
  actions BC will learn.

Images are decoded once into memory (no JPEG decode per step). The training split only: validation
and test scenes are never read. The result, OUT/backbone.safetensors, is what
`model.backbone_init=OUT` loads; every learner (BC, then DIPOLE, AWR and the control from BC) then
trains its heads on the frozen, cached features of this one backbone, so the comparison stays fair.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vla_dipole.data.collate import collate
from vla_dipole.data.shard_io import read_manifest
from vla_dipole.model.checked_safetensors import save_checked
from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.policy import BACKBONE_FILE, DipolePolicy
from vla_dipole.model.processor import batch_speed

ARC_LENGTHS = np.arange(0.0, 45.0, 5.0)  # m along the route centreline, from the ego's projection
LATERAL_SCALE = 3.0  # m: lane-offset targets are divided by this (about one lane width)
META_FILE = "pretrain_meta.json"


def lane_targets(scene: Any) -> np.ndarray:
    """The route centreline ahead of the ego in its own frame: [lateral offsets / 3 m, headings] at
    ARC_LENGTHS (the nearest on-route lane, chained through its successors, as the PDM scorer does)."""
    from navsim_adapter.geometry import global_to_local
    from navsim_adapter.pdm.scene_context import route_centerline

    pose = np.asarray(scene.current_frame.ego_status.ego_pose, dtype=np.float64)
    lanes = scene.map_api.lanes_of_roadblocks(list(scene.current_frame.roadblock_ids))
    local = global_to_local(route_centerline(scene.map_api, lanes, pose), pose)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(local[:, :2], axis=0).T))])
    arc -= arc[int(np.argmin(np.hypot(local[:, 0], local[:, 1])))]
    lateral = np.interp(ARC_LENGTHS, arc, local[:, 1]) / LATERAL_SCALE
    heading = np.interp(ARC_LENGTHS, arc, np.unwrap(local[:, 2]))
    return np.concatenate([lateral, heading]).astype(np.float32)


def scene_lane_targets(shards: Path, tokens: list[str], data_root: Path | None) -> np.ndarray:
    """lane_targets of every shard sample, from the split and data root the shards were built from."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    manifest = read_manifest(shards)
    root = data_root or Path(manifest["data_root"])
    loader = SceneLoader(manifest["split"], data_root=root, scene_filter=SceneFilter(frame_interval=1))
    missing = [t for t in tokens if t not in loader]
    if missing:
        raise ValueError(
            f"{shards}: {len(missing)} sample tokens (e.g. {missing[0]}) are not scenes of split "
            f"{manifest['split']!r} under {root}; pass --data-root where the shards were built from"
        )
    return np.stack([lane_targets(loader.get_scene(t)) for t in tokens])


class ReadOut(nn.Module):
    """Backbone tokens (+ proprio) -> the targets: one learned query attends over the tokens."""

    def __init__(self, width: int, proprio_dim: int, out_dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, width))
        self.attn = nn.MultiheadAttention(width, num_heads=4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width + proprio_dim, 256), nn.GELU(), nn.Linear(256, out_dim))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(tokens.shape[0], -1, -1)
        pooled, _ = self.attn(q, tokens, tokens, key_padding_mask=~mask.bool())
        return self.mlp(torch.cat([pooled[:, 0], proprio], dim=-1))


def trainable_policy(config: PolicyConfig) -> DipolePolicy:
    """The model config's policy with its whole backbone trainable (vision, projector, LLM)."""
    bb = config.backbone.replace(vision_mode="full", freeze_projector=False, freeze_llm=False)
    return DipolePolicy(PolicyConfig.from_dict({**config.to_dict(), "backbone": bb.to_dict()}))


def load_split(policy: DipolePolicy, shards: Path) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Every training sample, decoded once: model inputs with pixel values, and the logged future as
    normalised actions (statistics fitted on these shards, as BC's)."""
    from vla_dipole.training.indexed_data import IndexedShards
    from vla_dipole.training.policy_io import set_trajectory_stats

    data = IndexedShards([shards])
    batch = collate([data[i] for i in range(len(data))])
    want = policy.config.observation.num_images
    batch["pixel_values"] = policy.processor.images(batch.pop("images")[:, -want:])
    set_trajectory_stats(policy, [shards])
    speed = batch_speed(batch)
    actions = policy.processor.trajectory_to_actions(batch["human"], speed).flatten(1)
    return batch, actions, speed


def pretrain(
    shards: Path,
    model: str,
    out: Path,
    steps: int = 400,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Train the backbone on (lane, future) targets; write OUT/backbone.safetensors and OUT/pretrain_meta.json."""
    t0 = time.time()
    torch.manual_seed(seed)
    policy = trainable_policy(PolicyConfig.preset(model))
    batch, actions, _ = load_split(policy, shards)
    lanes = torch.as_tensor(scene_lane_targets(shards, list(batch["token"]), data_root))
    targets = torch.cat([lanes, actions], dim=1)
    readout = ReadOut(policy.backbone.hidden_size, policy.config.observation.proprio_dim, targets.shape[1])
    params = [p for p in policy.backbone.parameters() if p.requires_grad] + list(readout.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    n, n_lane = len(targets), lanes.shape[1]
    history = []
    policy.train()
    for step in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=generator)
        sub = {k: v[idx] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        cond = policy.encode(sub)
        err = (readout(cond.tokens, cond.mask, cond.proprio) - targets[idx]).pow(2)
        lane_loss, future_loss = err[:, :n_lane].mean(), err[:, n_lane:].mean()
        loss = lane_loss + future_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            history.append({"step": step + 1, "lane": float(lane_loss), "future": float(future_loss)})
            print(
                f"[pretrain] step {step + 1}/{steps} lane {lane_loss:.3f} future {future_loss:.3f}",
                flush=True,
            )
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in policy.backbone.state_dict().items()}
    save_checked(state, out / BACKBONE_FILE, {"format": "vla-dipole-pretrained-backbone"})
    meta = {
        "shards": str(shards),
        "model": model,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "samples": n,
        "targets": {"lane": n_lane, "future": int(actions.shape[1])},
        "history": history,
        "seconds": round(time.time() - t0, 1),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    print(f"[pretrain] done in {meta['seconds']} s: {out / BACKBONE_FILE}", flush=True)
    return meta


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m vla_dipole.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=Path, required=True, help="training shards (build_shards output)")
    p.add_argument("--model", default="demo", help="model preset or YAML whose backbone is pretrained")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=None, help="default: the shards' manifest data_root")
    a = p.parse_args(argv)
    if (a.out / BACKBONE_FILE).is_file():
        print(f"[pretrain] {a.out / BACKBONE_FILE} exists; delete it to pretrain again")
        return json.loads((a.out / META_FILE).read_text())
    return pretrain(a.shards, a.model, a.out, a.steps, a.batch_size, a.lr, a.seed, a.data_root)


if __name__ == "__main__":
    main()
