"""Shards built in interleaved parts (a SLURM array) then finished by one run equal a single build."""

from __future__ import annotations

import json

import pytest

from data_prep.build_shards import build_shards

OPTS = dict(sources="perturb", num_candidates=2, image_size="32x18", shard_size=4, frame_interval=4, seed=3)


@pytest.mark.slow
def test_parts_then_finish_equals_single_build(synthetic_root, tmp_path):
    single = build_shards(synthetic_root, "train", tmp_path / "single", **OPTS)
    parts_out = tmp_path / "parts"
    done = []
    for part in range(2):
        res = build_shards(synthetic_root, "train", parts_out, part=part, num_parts=2, **OPTS)
        assert res["complete"] is False and not (parts_out / "manifest.json").exists()
        done.append(res["shards_done"])
    assert done[0] < done[1] == res["shards"], "each part builds only its own shards"
    merged = build_shards(synthetic_root, "train", parts_out, **OPTS)
    assert [s["sha256"] for s in merged["shards"]] == [s["sha256"] for s in single["shards"]]
    assert json.loads((parts_out / "manifest.json").read_text())["num_samples"] == single["num_samples"]


def test_bad_part_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="part 2 of 2"):
        build_shards(tmp_path, "train", tmp_path / "o", part=2, num_parts=2, **OPTS)
