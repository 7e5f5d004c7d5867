"""`build_shards --metric-cache`: real-data scoring. Every scene's ScoringContext is read from a NAVSIM
metric cache (written here from the synthetic scenes with the official navsim classes, as
run_metric_caching.py writes them for real logs) instead of being built from the scene's JSON map.

The cache-backed build runs on a root WITHOUT the JSON maps (as a real OpenScene root looks to the
builder), so it can only have scored through the cache. What must agree with the map-based build:
- every NAVSIM v2 column (nc ... hc, ec, epdms): the cache holds the same scene (scene_type ORIGINAL,
  so v2's human filter applies alike on both paths; the human and past trajectories the filter and
  history comfort read travel in the cache);
- images, candidates, tokens and their order.
What can differ: `pdms` (v1). v1 evaluates TTC over the horizon plus 1 s (agents up to 5 s), but a
v2 metric cache holds observations for 4 s only (41 frames at 10 Hz), so the cache path scores v1 TTC
on those; it equals the map path's context cut to the 41 frames a cache holds. And the manifest's
provenance (data_root, metric_cache, command).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_prep.build_shards import BUILD_DIR, ScoringSourceError, build_shards, main
from vla_dipole.data.shard_format import SCORE_NAMES
from vla_dipole.training.indexed_data import read_batch

from .conftest import BUILD


def _samples(out):
    batch = read_batch(out, 64)
    keys = ("token", "candidates", "human", "candidate_scores", "human_scores", "images")
    return {k: batch[k] if k == "token" else batch[k].numpy() for k in keys}


def _sparse_cache(cache, tmp_path, drop: str | None):
    """A second cache dir: the same pickles, indexed by a metadata csv without `drop` (paths stay absolute)."""
    meta = next((cache / "metadata").glob("*.csv"))
    lines = [ln for ln in meta.read_text().splitlines() if drop is None or f"/{drop}/" not in ln]
    out = tmp_path / f"cache-without-{drop}"
    (out / "metadata").mkdir(parents=True)
    (out / "metadata" / meta.name).write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def map_built(split_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("map_shards")
    return out, build_shards(split_root, "unit", out, **BUILD)


@pytest.fixture(scope="module")
def cache_built(mapless_root, unit_metric_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache_shards")
    return out, build_shards(mapless_root, "unit", out, metric_cache=unit_metric_cache, **BUILD)


@pytest.mark.navsim
def test_cache_scores_equal_map_scores(split_root, map_built, cache_built, unit_metric_cache):
    (map_out, map_manifest), (cache_out, manifest) = map_built, cache_built
    assert manifest["config"]["metric_cache"] == str(unit_metric_cache.resolve())
    assert manifest["metric_cache"] == manifest["config"]["metric_cache"]
    assert manifest["skipped_scenes"] == {"not_in_metric_cache": 0}
    assert map_manifest["config"]["metric_cache"] is None
    assert manifest["num_samples"] == map_manifest["num_samples"] == 8
    ref, got = _samples(map_out), _samples(cache_out)
    assert got["token"] == ref["token"]
    np.testing.assert_array_equal(got["candidates"], ref["candidates"])
    np.testing.assert_array_equal(got["images"], ref["images"])
    v2 = [i for i, name in enumerate(SCORE_NAMES) if name != "pdms"]
    for key in ("candidate_scores", "human_scores"):
        for i in v2:
            np.testing.assert_allclose(
                got[key][..., i], ref[key][..., i], atol=1e-5, err_msg=f"{key}[{SCORE_NAMES[i]}] differs"
            )
    epdms = got["candidate_scores"][..., SCORE_NAMES.index("epdms")]
    assert epdms.std() > 0 and (epdms < 1).any()  # the comparison covers really scored, failing candidates
    pdms = np.concatenate([got["candidate_scores"], got["human_scores"][:, None]], 1)[
        ..., SCORE_NAMES.index("pdms")
    ]
    np.testing.assert_allclose(pdms, _pdms_on_cache_horizon(split_root, got), atol=1e-5)


def _pdms_on_cache_horizon(root, samples) -> np.ndarray:
    """v1 PDMS of the stored trajectories on map-built contexts cut to the 4 s of agents a v2 cache holds."""
    from dataclasses import replace

    from navsim_adapter.pdm import build_context, score
    from navsim_adapter.pdm.simulation import NUM_STEPS
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    loader = SceneLoader("unit", data_root=root, scene_filter=SceneFilter(frame_interval=1))
    t = NUM_STEPS + 1
    contexts = []
    for token in samples["token"]:
        ctx = build_context(loader.get_scene(token))
        cut = {
            k: getattr(ctx, k)[:t]
            for k in ("agent_boxes", "agent_velocity", "agent_valid", "red_light_active")
        }
        contexts.append(replace(ctx, **cut))
    trajs = np.concatenate([samples["candidates"], samples["human"][:, None]], 1)
    return score(contexts, trajs, return_states=False).pdms


def test_real_root_without_metric_cache_fails_early(mapless_root, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(
        ScoringSourceError, match=r"no synthetic JSON map .*run_metric_caching\.py.*--metric-cache DIR"
    ):
        build_shards(mapless_root, "unit", out, **BUILD)
    assert not out.exists(), "nothing is written before the check"
    with pytest.raises(SystemExit) as exit_info:  # the CLI prints just the message
        main(["--data-root", str(mapless_root), "--split", "unit", "--out", str(out), "--limit", "2"])
    assert str(exit_info.value).startswith("build_shards: ") and "--metric-cache DIR" in str(exit_info.value)


@pytest.mark.navsim
def test_token_missing_from_cache_is_a_clear_error_or_skipped(
    mapless_root, unit_metric_cache, cache_built, tmp_path
):
    from navsim_adapter.pdm.metric_cache import MissingTokenError

    tokens = _samples(cache_built[0])["token"]
    victim = tokens[4]
    log = next(p.parent.parent.parent.name for p in unit_metric_cache.rglob(f"{victim}/metric_cache.pkl"))
    sparse = _sparse_cache(unit_metric_cache, tmp_path, victim)
    with pytest.raises(MissingTokenError) as err:
        build_shards(mapless_root, "unit", tmp_path / "strict", metric_cache=sparse, **BUILD)
    msg = str(err.value)
    assert victim in msg and str(sparse) in msg and f"log {log}" in msg and "1 of the 8 scenes" in msg
    assert not (tmp_path / "strict").exists()
    cli = ["--data-root", str(mapless_root), "--split", "unit", "--out", str(tmp_path / "cli")]
    with pytest.raises(SystemExit, match=f"build_shards: scene token {victim} "):
        main([*cli, "--metric-cache", str(sparse), "--limit", "8"])

    manifest = build_shards(
        mapless_root, "unit", tmp_path / "skip", metric_cache=sparse, missing_cache="skip", **BUILD
    )
    assert manifest["skipped_scenes"] == {"not_in_metric_cache": 1}
    assert manifest["config"]["missing_cache"] == "skip"
    kept = _samples(tmp_path / "skip")["token"]
    # the limit counts built scenes: the 9th scene of the split fills the place of the skipped one
    assert len(kept) == 8 and victim not in kept and kept[:4] == tokens[:4] and kept[4:7] == tokens[5:]


@pytest.mark.navsim
def test_resume_with_another_metric_cache_is_refused(split_root, unit_metric_cache, cache_built, tmp_path):
    out = tmp_path / "resume"
    partial = build_shards(split_root, "unit", out, metric_cache=unit_metric_cache, max_shards=1, **BUILD)
    assert partial["complete"] is False
    other = _sparse_cache(unit_metric_cache, tmp_path, None)  # same entries, another cache dir
    for cache in (other, None):  # another cache, or scoring from the maps instead, would mix scorings
        with pytest.raises(ValueError, match=r"other settings \(differences: \['metric_cache'\]\)"):
            build_shards(split_root, "unit", out, metric_cache=cache, **BUILD)
    # finished by 2 worker processes, each reading the cache itself
    done = build_shards(split_root, "unit", out, metric_cache=unit_metric_cache, workers=2, **BUILD)
    assert [s["sha256"] for s in done["shards"]] == [s["sha256"] for s in cache_built[1]["shards"]]


def test_build_started_before_the_option_still_resumes(split_root, map_built, tmp_path):
    """settings.json of an older build has no metric_cache / missing_cache: they compare as their defaults."""
    out = tmp_path / "old"
    build_shards(split_root, "unit", out, max_shards=1, **BUILD)
    path = out / BUILD_DIR / "settings.json"
    old = {
        k: v for k, v in json.loads(path.read_text()).items() if k not in ("metric_cache", "missing_cache")
    }
    path.write_text(json.dumps(old))
    done = build_shards(split_root, "unit", out, **BUILD)
    assert [s["sha256"] for s in done["shards"]] == [s["sha256"] for s in map_built[1]["shards"]]
