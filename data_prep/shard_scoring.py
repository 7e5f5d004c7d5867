"""One chunk of scenes -> complete samples: the stored observation (the ONE conversion of
`vla_dipole.data.observation`), the candidates of every source and their PDM sub-scores.

Randomness is seeded per scene (`scene_rng`), and the policy source per chunk from its first scene, so
the same scene gets the same candidates whatever worker builds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from data_prep import candidates as cands
from data_prep.shard_settings import BuildSettings
from navsim_adapter.pdm import build_context
from navsim_adapter.pdm.metric_cache import MetricCacheIndex
from vla_dipole.data.observation import (
    STATUS_FIELDS,
    decode_observation,
    encode_agent_input,
    scene_agent_input,
)
from vla_dipole.data.shard_format import NUM_POSES, SCORE_NAMES, SOURCES, Sample

SCORE_CHUNK = 16  # scenes scored per PDM call
EC_FILL = 1.0  # stored extended comfort when it cannot be computed (see docs/shards.md)


def scene_rng(seed: int, token: str) -> np.random.Generator:
    """Per-scene generator: the same scene gets the same candidates whatever worker builds it."""
    return np.random.default_rng([seed, int(hashlib.sha256(token.encode()).hexdigest()[:15], 16)])


def scene_sample(scene: Any, settings: BuildSettings) -> Sample:
    """Everything of a sample except candidates and scores."""
    try:
        encoded = encode_agent_input(scene_agent_input(scene, settings.observation), settings.observation)
    except ValueError as err:
        raise ValueError(f"scene {scene.token} (log {scene.metadata.log_name}): {err}") from err
    empty = np.zeros((0, NUM_POSES, 3), np.float32)
    return Sample(
        token=scene.token,
        log_name=scene.metadata.log_name,
        map_name=scene.metadata.map_name,
        split=settings.split,
        timestamp_us=int(scene.current_frame.timestamp),
        cameras=list(settings.cameras),
        image_size=settings.image_size,
        images=encoded.jpegs,
        **encoded.status,
        human=scene.get_future_trajectory(NUM_POSES).astype(np.float32),
        candidates=empty,
        sources=np.zeros(0, np.uint8),
        candidate_scores=np.zeros((0, len(SCORE_NAMES)), np.float32),
        human_scores=np.zeros(len(SCORE_NAMES), np.float32),
    )


def decoded_view(sample: Sample) -> dict[str, Any]:
    """What the loader would yield for this sample (the policy source samples from it)."""
    status = {k: getattr(sample, k) for k in STATUS_FIELDS}
    return {
        **decode_observation(sample.images, status),
        "human": sample.human,
        "token": sample.token,
        "log_name": sample.log_name,
    }


def add_candidates(
    samples: list[Sample],
    settings: BuildSettings,
    vocab: np.ndarray | None,
    runner: Any = None,
    omega: float = 0.0,
) -> None:
    """Fill every sample's candidates and source codes, source by source in the build's order.

    `runner` (a `vla_dipole.inference.PolicyRunner`) draws the policy source: one batched call for the
    chunk at `omega`, its generator seeded from the build seed and the chunk's first token.
    """
    s = settings
    per_source: list[list[np.ndarray]] = [[] for _ in samples]
    for name, n in s.sources:
        if name == "policy":
            seed = int(scene_rng(s.seed, samples[0].token).integers(2**31))
            views = [decoded_view(x) for x in samples]
            trajs = runner.sample_batch(views, [omega], seed, num_samples=n).reshape(len(samples), n, 8, 3)
            for j in range(len(samples)):
                per_source[j].append(trajs[j])
            continue
        for j, sample in enumerate(samples):
            rng = scene_rng(s.seed + SOURCES.index(name), sample.token)
            if name == "vocab":
                per_source[j].append(cands.vocab_candidates(vocab, sample.human, n, rng, s.vocab_mode))
            else:
                per_source[j].append(cands.perturb_candidates(sample.human, n, rng))
    codes = np.concatenate([np.full(n, SOURCES.index(name), np.uint8) for name, n in s.sources])
    for sample, parts in zip(samples, per_source, strict=True):
        sample.candidates = np.concatenate(parts).astype(np.float32)
        sample.sources = codes


class ContextSource:
    """ScoringContexts: read from the metric cache when the build has one (real logs), else built from
    the scene and its JSON map, reusing an earlier build's reference plan of the scene when given one
    (`data_prep.reference_plans`). The cache's csv and pickles are opened on first use, in the worker."""

    def __init__(self, metric_cache: str | None, reference_plans: Mapping[str, np.ndarray] | None = None):
        self.path, self.cache = metric_cache, None
        self.reference_plans = reference_plans or {}

    def __call__(self, scenes: list) -> list:
        if self.path is None:
            return [self._from_scene(scene) for scene in scenes]
        if self.cache is None:
            self.cache = MetricCacheIndex(self.path, "scoring shard candidates")
        return [self.cache.context(scene.token, scene.metadata.log_name) for scene in scenes]

    def _from_scene(self, scene: Any):
        plan = self.reference_plans.get(scene.token)
        if plan is None:
            return build_context(scene)
        ctx = build_context(scene, reference=False)
        ctx.reference_poses = np.array(plan, dtype=np.float64)
        return ctx


def add_scores(samples: list[Sample], contexts: list, score_fn) -> None:
    trajs = np.stack([np.concatenate([x.candidates, x.human[None]]) for x in samples])
    result = score_fn(contexts, trajs, return_states=False)
    table = np.stack([np.asarray(getattr(result, name), dtype=np.float32) for name in SCORE_NAMES], axis=-1)
    # EC needs the previous frame's simulated states of the same policy, which candidates do not have:
    # the scorer leaves it NaN (and EPDMS re-normalises without it, as NAVSIM does); we store 1.0.
    ec = SCORE_NAMES.index("ec")
    table[..., ec] = np.nan_to_num(table[..., ec], nan=EC_FILL)
    if table.shape != (*trajs.shape[:2], len(SCORE_NAMES)):
        raise ValueError(f"PDM score returned shape {table.shape[:-1]}, expected {trajs.shape[:2]}")
    for sample, row in zip(samples, table, strict=True):
        sample.candidate_scores, sample.human_scores = row[:-1], row[-1]
