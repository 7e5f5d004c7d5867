"""A build of the synthetic split keeps each scene's PDM reference plan; a later build of the same scenes
(an online round) given them scores without planning again, to the same bits."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import navsim_adapter.pdm.reference_planner as planner
from data_prep.build_shards import BUILD_DIR, BuildSettings, build, build_shards
from data_prep.reference_plans import SUFFIX, load_plans
from vla_dipole.data.shard_io import MANIFEST_NAME, read_manifest
from vla_dipole.training.indexed_data import IndexedShards

KW = dict(image_size=(64, 40), sources=("perturb",), num_candidates=3, shard_size=4, seed=0, workers=1)


def _rows(shards):
    data = IndexedShards([shards], decode_images=False)
    return [data[i] for i in range(len(data))]


def test_a_later_build_reuses_the_plans_and_scores_the_same(split_root, tmp_path, monkeypatch):
    offline = tmp_path / "offline"
    manifest = build_shards(split_root, "unit", offline, **KW)
    assert len(list((offline / BUILD_DIR).glob(f"*{SUFFIX}"))) == len(manifest["shards"])
    plans = load_plans(offline)
    tokens = [row["token"] for row in _rows(offline)]
    assert sorted(plans) == sorted(tokens) and all(p.shape == (41, 3) for p in plans.values())

    # the round's situation: the offline build's scenes, new candidates (another seed)
    settings = dataclasses.replace(BuildSettings.from_json(manifest["config"], "offline manifest"), seed=7)
    planned = build(settings, tmp_path / "planned")
    monkeypatch.setattr(planner, "plan_reference", lambda *a, **k: pytest.fail("re-planned a given scene"))
    reused = build(settings, tmp_path / "reused", reference_plans=plans)
    assert reused["num_samples"] == planned["num_samples"] == len(tokens)
    assert not list((tmp_path / "reused" / BUILD_DIR).glob(f"*{SUFFIX}"))  # given plans are not written again
    for a, b in zip(_rows(tmp_path / "planned"), _rows(tmp_path / "reused"), strict=True):
        assert a["token"] == b["token"] and np.array_equal(a["candidates"], b["candidates"])
        assert np.array_equal(a["candidate_scores"], b["candidate_scores"])
        assert np.array_equal(a["human_scores"], b["human_scores"])
    assert not np.array_equal(_rows(tmp_path / "planned")[0]["candidates"], _rows(offline)[0]["candidates"])


def test_plans_of_another_scorer_version_are_not_used(split_root, tmp_path):
    out = tmp_path / "offline"
    build_shards(split_root, "unit", out, limit=3, **KW)
    assert len(load_plans(out)) == 3
    manifest = read_manifest(out)
    (out / MANIFEST_NAME).write_text(json.dumps({**manifest, "scorer_version": "pdm-older"}))
    assert load_plans(out) == {}
