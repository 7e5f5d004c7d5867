"""Backbone speed: milliseconds per observation for the presets (forward, and forward + backward).

``python -m benchmarks.backbone [--presets tiny small] [--batch 4] [--images 1] [--repeats 5]``
prints one table row per (preset, mode). ``run_bench(...) -> list[dict]`` is what ``vla_dipole.bench`` calls.
The ``openvla-7b`` preset is only sensible on a GPU (bf16 autocast applies there).
"""

from __future__ import annotations

import argparse
import time

import torch

from vla_dipole import tables
from vla_dipole.model.backbone import PrismaticBackbone
from vla_dipole.model.backbone_config import BackboneConfig


def _inputs(config: BackboneConfig, batch: int, images: int, text_len: int, device: torch.device):
    s = config.image_size
    pixel_values = torch.randn(batch, images, 6, s, s, device=device)
    ids = torch.randint(3, min(config.llm.vocab_size, 1000), (batch, text_len), device=device)
    ids[:, 0] = config.llm.bos_token_id
    return pixel_values, ids, torch.ones_like(ids)


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def bench_preset(
    preset: str,
    batch: int = 4,
    images: int = 1,
    text_len: int = 24,
    repeats: int = 5,
    device: str | None = None,
) -> list[dict]:
    """Forward (no grad) and train-step (forward + backward, LLM LoRA + projector) timings for one preset."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    cfg = BackboneConfig.preset(preset)
    model = PrismaticBackbone(cfg).to(dev).eval()
    params = sum(p.numel() for p in model.parameters())
    pv, ids, mask = _inputs(cfg, batch, images, text_len, dev)
    rows = []

    def forward():
        with torch.no_grad():
            model(pv, ids, mask)

    seq = text_len + images * model.num_patches
    fwd = _time(forward, repeats, dev)
    rows.append(
        dict(preset=preset, mode="forward", params_m=params / 1e6, seq=seq, ms_per_obs=1e3 * fwd / batch)
    )

    train_model = PrismaticBackbone(cfg.replace(lora={"enabled": True})).to(dev).train()

    def train_step():
        train_model(pv, ids, mask).hidden.float().square().mean().backward()

    step = _time(train_step, repeats, dev)
    rows.append(
        dict(
            preset=preset,
            mode="fwd+bwd (LoRA)",
            params_m=params / 1e6,
            seq=seq,
            ms_per_obs=1e3 * step / batch,
        )
    )
    return rows


def run_bench(presets=("tiny", "small"), **kwargs) -> list[dict]:
    rows = []
    for preset in presets:
        rows += bench_preset(preset, **kwargs)
    return rows


def format_table(rows: list[dict], title: str = "backbone") -> str:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return tables.format_table(
        ["preset", "mode", "params (M)", "tokens", "ms / obs"],
        [(r["preset"], r["mode"], r["params_m"], r["seq"], r["ms_per_obs"]) for r in rows],
        title=f"== {title} ({device}, {torch.get_num_threads()} threads) ==",
        formats=".1f",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--text-len", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    rows = run_bench(
        args.presets,
        batch=args.batch,
        images=args.images,
        text_len=args.text_len,
        repeats=args.repeats,
        device=args.device,
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
