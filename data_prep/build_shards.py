"""Turn a NAVSIM split into scored webdataset shards: one sample per scene with images, ego status,
the human future, K candidate trajectories and every PDM sub-score (schema: docs/shards.md).

    python -m data_prep.build_shards --data-root DATA --split NAME --out OUT \
        [--sources vocab,perturb] [--num-candidates 16] [--vocabulary DIR] [--workers 2] [--shard-size 256] \
        [--metric-cache DIR [--missing-cache error|skip]]

Candidates are scored against a ScoringContext per scene: built from the scene and its map on the
synthetic world (JSON maps), or read from a NAVSIM metric cache (`--metric-cache`, built by navsim's
run_metric_caching.py) on real OpenScene logs, whose nuPlan maps only reach us through that cache.

Shards are built in parallel (one job per shard, a process pool) and are resumable: a shard is
written to a temporary file and renamed only when complete, with a sidecar in OUT/.build/; a
re-run with the same command builds only the missing shards, byte-identical to a full run.

The jobs live in their own modules: `shard_settings` (what determines the bytes), `shard_plan`
(scenes, shards, vocabulary), `shard_scoring` (one chunk of scenes -> samples), `shard_workers`
(the pool), `shard_manifest`; this module validates the options and runs them in order.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import candidates as cands
from data_prep.shard_manifest import write_build_manifest
from data_prep.shard_plan import (
    ScoringSourceError,
    list_scenes,
    plan_shards,
    prepare_vocabulary,
    select_scenes,
)
from data_prep.shard_settings import (
    BUILD_DIR,
    MAX_HISTORY,
    MISSING_CACHE_MODES,
    BuildSettings,
    check_settings,
    parse_image_size,
    parse_sources,
)
from data_prep.shard_workers import done_record, run_jobs
from data_prep.vocabulary import VOCAB_ARRAY, save_vocabulary
from navsim_adapter.pdm import SCORER_VERSION
from navsim_adapter.pdm.metric_cache import MetricCacheIndex, MissingTokenError
from navsim_adapter.scene import CAMERA_NAMES
from vla_dipole.cli_options import add_sampling_args
from vla_dipole.data.shard_format import JPEG_QUALITY
from vla_dipole.data.shard_io import shard_name

__all__ = ["BUILD_DIR", "BuildSettings", "ScoringSourceError", "build", "build_shards", "main"]


def build_shards(
    data_root: str | Path,
    split: str,
    out: str | Path,
    *,
    cameras: Sequence[str] = ("cam_f0",),
    image_size: int | str | Sequence[int] = (224, 224),
    history_frames: int = 1,
    sources: str | Sequence[str] | Mapping[str, int] = ("vocab", "perturb"),
    num_candidates: int | str | Mapping[str, int] = 8,
    workers: int = 1,
    shard_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    vocabulary: str | Path | None = None,
    frame_interval: int = 1,
    policy: Any = None,
    omega: float = 0.0,
    policy_steps: int | None = None,
    vocab_mode: str = "mixed",
    jpeg_quality: int = JPEG_QUALITY,
    overwrite: bool = False,
    command: str | None = None,
    max_shards: int | None = None,
    part: int | None = None,
    num_parts: int = 1,
    metric_cache: str | Path | None = None,
    missing_cache: str = "error",
) -> dict[str, Any]:
    """Build (or finish) the shards of one split; returns the manifest (also written to OUT/manifest.json).

    `policy` serves the `policy` candidate source: a checkpoint directory, or a loaded
    `vla_dipole.inference.PolicyRunner` (online rounds hand over their in-memory policy; it then builds
    in this process), sampled at `omega` with `policy_steps` denoising steps (a runner has its own).

    `metric_cache` (a NAVSIM metric cache dir) supplies every scene's ScoringContext, as real logs need;
    without it the split must be synthetic (JSON maps). `missing_cache="skip"` leaves out scenes the
    cache lacks (counted in the manifest's `skipped_scenes`) instead of failing.

    `max_shards` stops after building that many new shards without writing the manifest (used to
    test resuming; a normal run leaves it None). `part`/`num_parts` build only shards
    `part, part + num_parts, ...` of the plan and never write the manifest: several processes
    (a SLURM array) can fill one OUT, and a final run without `part` checks them and writes it.
    """
    src = parse_sources(sources, num_candidates)
    names = [k for k, _ in src]
    if "policy" in names and policy is None:
        raise ValueError(
            "candidate source 'policy' needs --policy CKPT (a DipolePolicy checkpoint directory)"
        )
    if policy is not None and "policy" not in names:
        src = (*src, ("policy", int(num_candidates) if isinstance(num_candidates, int) else 8))
    if not 1 <= history_frames <= MAX_HISTORY:
        raise ValueError(f"history_frames must be in 1..{MAX_HISTORY}, got {history_frames}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if vocab_mode not in cands.VOCAB_MODES:
        raise ValueError(f"vocab_mode must be one of {cands.VOCAB_MODES}, got {vocab_mode!r}")
    cameras = tuple(cameras.split(",") if isinstance(cameras, str) else cameras)
    unknown = [c for c in cameras if c not in CAMERA_NAMES]
    if unknown or not cameras:
        raise ValueError(f"cameras {list(cameras)}: expected a non-empty subset of {CAMERA_NAMES}")
    if missing_cache not in MISSING_CACHE_MODES:
        raise ValueError(f"missing_cache must be one of {MISSING_CACHE_MODES}, got {missing_cache!r}")
    runner = None
    if policy is not None:
        runner = _policy_runner(policy, policy_steps)  # fails fast, before any worker starts
    settings = BuildSettings(
        data_root=str(Path(data_root).resolve()),
        split=split,
        cameras=cameras,
        image_size=parse_image_size(image_size),
        history_frames=history_frames,
        sources=src,
        shard_size=shard_size,
        limit=limit,
        seed=seed,
        frame_interval=frame_interval,
        jpeg_quality=jpeg_quality,
        vocab_mode=vocab_mode,
        policy=None
        if runner is None
        else {"checkpoint": runner.source, "omega": float(omega), "num_steps": runner.num_steps},
        metric_cache=None if metric_cache is None else str(Path(metric_cache).resolve()),
        missing_cache=missing_cache,
    )
    return build(
        settings,
        out,
        vocabulary=vocabulary,
        runner=runner,
        workers=workers,
        overwrite=overwrite,
        command=command,
        max_shards=max_shards,
        part=part,
        num_parts=num_parts,
    )


def _policy_runner(policy: Any, num_steps: int | None) -> Any:
    """A PolicyRunner as given, or loaded from a checkpoint directory (torch loads only then)."""
    from vla_dipole.inference import PolicyRunner

    if isinstance(policy, PolicyRunner):
        if num_steps is not None and num_steps != policy.num_steps:
            raise ValueError(
                f"policy_steps={num_steps} differs from the given runner's num_steps={policy.num_steps}"
            )
        return policy
    if not Path(policy).is_dir():
        raise FileNotFoundError(f"--policy {policy}: policy checkpoint directory does not exist")
    return PolicyRunner.from_checkpoint(policy, num_steps, need_spec=False)


def build(
    settings: BuildSettings,
    out: str | Path,
    *,
    vocabulary: str | Path | None = None,
    runner: Any = None,
    workers: int = 1,
    overwrite: bool = False,
    command: str | None = None,
    max_shards: int | None = None,
    part: int | None = None,
    num_parts: int = 1,
    reference_plans: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Plan, build and (when every shard is done) write the manifest of `settings` into OUT.

    `runner` serves the policy source (`settings.policy` records its source, omega and steps); an
    in-memory one builds in this process (`workers` must be 1). `reference_plans` (token -> poses, from
    `data_prep.reference_plans.load_plans` of an earlier build of the same scenes) skips re-planning
    them. See `build_shards` for the rest.
    """
    out = Path(out)
    if settings.policy is not None and runner is None:
        runner = _policy_runner(settings.policy["checkpoint"], settings.policy.get("num_steps"))
    if runner is not None and workers > 1 and runner.checkpoint is None:
        raise ValueError(f"an in-memory policy ({runner.source}) builds in this process: use workers=1")
    if num_parts < 1 or (part is not None and not 0 <= part < num_parts):
        raise ValueError(f"part {part} of {num_parts}: need num_parts >= 1 and 0 <= part < num_parts")
    if part is not None and overwrite:
        raise ValueError("--overwrite with --part would delete the other parts' shards")
    s = settings
    cache = None
    if s.metric_cache is not None:
        cache = MetricCacheIndex(s.metric_cache, "scoring shard candidates with --metric-cache")
    scenes, skipped = select_scenes(
        list_scenes(s.data_root, s.split, s.frame_interval), s.limit, s.data_root, cache, s.missing_cache
    )
    if overwrite and out.exists():
        shutil.rmtree(out)
    (out / BUILD_DIR).mkdir(parents=True, exist_ok=True)
    jobs = plan_shards(scenes, s.shard_size)
    mine = [j for j in jobs if part is None or j.index % num_parts == part]
    own = {shard_name(s.split, j.index) for j in mine}
    for stale in out.glob("*.tmp"):  # only our own leftovers: other parts may be writing theirs
        if part is None or any(stale.name.startswith(name) for name in own):
            stale.unlink()
    vocab, vocab_config = None, None
    if "vocab" in [k for k, _ in s.sources]:
        vocab, vocab_config = prepare_vocabulary(
            s.data_root, s.split, out, s.limit, s.frame_interval, vocabulary, s.seed
        )
        n_vocab = dict(s.sources)["vocab"]
        if n_vocab > len(vocab):
            raise ValueError(
                f"{n_vocab} vocab candidates per scene but the vocabulary has {len(vocab)} entries"
            )
    s = settings = dataclasses.replace(
        s,
        vocabulary_sha256=vocab_config["sha256"] if vocab_config else None,
        scorer_version=str(SCORER_VERSION),
    )
    check_settings(out, settings)
    if vocab_config is not None and not (out / "vocabulary" / VOCAB_ARRAY).is_file():
        save_vocabulary(
            out / "vocabulary", vocab, {k: v for k, v in vocab_config.items() if k not in ("size", "sha256")}
        )

    records = {job.index: done_record(out, shard_name(s.split, job.index)) for job in jobs}
    todo = [job for job in mine if records[job.index] is None][:max_shards]
    run_jobs(todo, records, jobs, settings, out, vocab, workers, runner, reference_plans)
    if part is not None or any(r is None for r in records.values()):
        return {
            "complete": False,
            "shards_done": sum(r is not None for r in records.values()),
            "shards": len(jobs),
            "part": part,
            "num_parts": num_parts,
        }
    ordered = [records[job.index] for job in jobs]
    return write_build_manifest(
        out, settings, ordered, command=command, vocab_config=vocab_config, skipped=skipped
    )


def _listed(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


def observation_settings(a: argparse.Namespace) -> dict[str, Any]:
    """cameras / image_size / history_frames / jpeg_quality from --model, else the flags (or defaults);
    a flag that contradicts --model is an error naming both values."""
    flags = {
        "cameras": a.cameras.split(",") if a.cameras else None,
        "image_size": parse_image_size(a.image_size) if a.image_size else None,
        "history_frames": a.history_frames,
        "jpeg_quality": a.jpeg_quality,
    }
    defaults = {
        "cameras": ["cam_f0"],
        "image_size": (224, 224),
        "history_frames": 1,
        "jpeg_quality": JPEG_QUALITY,
    }
    if a.model is None:
        return {k: defaults[k] if v is None else v for k, v in flags.items()}
    from vla_dipole.model.observation_spec import load_model_config, shard_settings

    model = shard_settings(load_model_config(a.model).observation)
    for key, value in flags.items():
        want = model.get(key)
        if value is None or want is None:
            continue
        ok = value >= want if key == "history_frames" else _listed(value) == _listed(want)
        if not ok:
            raise ValueError(
                f"--{key.replace('_', '-')} {value} contradicts --model {a.model}, which reads {key}={want}"
            )
    given = {k: v for k, v in flags.items() if v is not None}
    return {**defaults, **model, **given}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data-root", required=True, help="OpenScene-format root (navsim_logs/<split>/*.pkl, sensor_blobs/)"
    )
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--model",
        default=None,
        help="model preset (openvla-7b, tiny, ...), model YAML or policy dir: store what it reads (its "
        "observation: cameras, history frames, image size); the three flags below then must agree",
    )
    p.add_argument("--cameras", default=None, help="comma-separated camera names (default cam_f0)")
    p.add_argument("--image-size", default=None, help="stored image size WxH or one number (default 224x224)")
    p.add_argument(
        "--history-frames",
        type=int,
        default=None,
        help="frames of images / ego status to store (1-4, default 1)",
    )
    p.add_argument(
        "--sources",
        default="vocab,perturb",
        help="candidate sources: vocab, perturb, policy (src:N sets a count)",
    )
    p.add_argument("--num-candidates", default="8", help="candidates per source (N or vocab:N,perturb:M)")
    p.add_argument(
        "--vocabulary", default=None, help="vocabulary artifact dir (default: fit one on the split)"
    )
    p.add_argument("--vocab-mode", default="mixed", choices=cands.VOCAB_MODES)
    p.add_argument("--policy", default=None, help="DipolePolicy checkpoint for the 'policy' source")
    p.add_argument(
        "--samples", type=int, default=None, help="policy samples per scene (default: --num-candidates)"
    )
    add_sampling_args(p, omega=0.0, steps_aliases=("--policy-steps",), what="of the policy samples ")
    p.add_argument(
        "--metric-cache",
        default=None,
        help="NAVSIM metric cache dir (navsim's run_metric_caching.py): scores real logs (nuPlan maps)",
    )
    p.add_argument(
        "--missing-cache",
        default="error",
        choices=MISSING_CACHE_MODES,
        help="a scene without a metric-cache entry: fail (default) or skip it (counted in the manifest)",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shard-size", type=int, default=256, help="scenes per shard")
    p.add_argument("--limit", type=int, default=None, help="only the first N scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frame-interval", type=int, default=1, help="a scene every N frames (1 = every frame)")
    p.add_argument("--jpeg-quality", type=int, default=None, help=f"default {JPEG_QUALITY}")
    p.add_argument("--overwrite", action="store_true", help="delete OUT first")
    p.add_argument(
        "--part", type=int, default=None, help="build only shards part, part+N, ... (SLURM array task)"
    )
    p.add_argument(
        "--num-parts", type=int, default=1, help="N for --part; then re-run without --part to finish"
    )
    a = p.parse_args(argv)
    try:
        observation = observation_settings(a)
    except ValueError as err:
        raise SystemExit(f"build_shards: {err}") from None
    num: int | str = int(a.num_candidates) if a.num_candidates.isdigit() else a.num_candidates
    sources = a.sources
    if a.policy is not None and a.samples is not None:
        sources = ",".join(
            [s for s in sources.split(",") if not s.startswith("policy")] + [f"policy:{a.samples}"]
        )
    try:
        manifest = build_shards(
            a.data_root,
            a.split,
            a.out,
            **observation,
            sources=sources,
            num_candidates=num,
            workers=a.workers,
            shard_size=a.shard_size,
            limit=a.limit,
            seed=a.seed,
            frame_interval=a.frame_interval,
            vocabulary=a.vocabulary,
            policy=a.policy,
            omega=a.omega,
            policy_steps=a.steps,
            vocab_mode=a.vocab_mode,
            overwrite=a.overwrite,
            part=a.part,
            num_parts=a.num_parts,
            metric_cache=a.metric_cache,
            missing_cache=a.missing_cache,
            command=shlex.join(
                [Path(sys.executable).name, "-m", "data_prep.build_shards", *(argv or sys.argv[1:])]
            ),
        )
    except (ScoringSourceError, MissingTokenError) as err:  # bad input: one message, no traceback
        raise SystemExit(f"build_shards: {err}") from None
    if not manifest.get("complete", True):
        print(
            f"part {a.part} of {a.num_parts}: {manifest['shards_done']} of {manifest['shards']} shards done in "
            f"{a.out}; run again without --part to finish and write the manifest"
        )
        return
    print(
        f"{manifest['num_samples']} scenes x {manifest['num_candidates']} candidates in "
        f"{len(manifest['shards'])} shards -> {a.out}/manifest.json"
    )


if __name__ == "__main__":
    main()
