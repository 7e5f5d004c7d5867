"""Sample encode/decode round trip, schema errors and deterministic shard bytes."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from vla_dipole.data.shard_format import (
    ARRAY_FIELDS,
    SampleFormatError,
    decode_sample,
    encode_arrays,
    encode_jpeg,
    encode_sample,
)
from vla_dipole.data.shard_io import ShardWriter, read_manifest, sha256_file

from .conftest import make_sample, write_build


def test_round_trip_keeps_every_field():
    rng = np.random.default_rng(1)
    sample = make_sample("abcdef0123456701", rng, k=5, history=3)
    raw = encode_sample(sample)
    out = decode_sample({**raw, "__url__": "x.tar"})
    assert out["token"] == sample.token and out["log_name"] == sample.log_name
    for name in (
        "ego_pose",
        "ego_velocity",
        "ego_acceleration",
        "human",
        "candidates",
        "candidate_scores",
        "human_scores",
    ):
        np.testing.assert_allclose(out[name], getattr(sample, name), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["driving_command"], sample.driving_command)
    np.testing.assert_array_equal(out["sources"], sample.sources)
    assert out["images"].shape == (3, 24, 32, 3) and out["images"].dtype == np.uint8
    assert out["meta"]["history_frames"] == 3 and out["meta"]["image_size"] == [32, 24]


def test_image_frames_keeps_the_last_frames_of_every_camera():
    """Training decodes only the frames the model reads: the same images, in the order the full decode has."""
    rng = np.random.default_rng(6)
    cams = ["cam_f0", "cam_l0"]
    images = [encode_jpeg(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (32, 24)) for _ in range(3 * 2)]
    sample = dataclasses.replace(make_sample("abcdef0123456706", rng, history=3), cameras=cams, images=images)
    raw = {**encode_sample(sample), "__url__": "x.tar"}
    full = decode_sample(raw)["images"]
    assert full.shape == (6, 24, 32, 3)
    for n in (1, 2, 3):
        np.testing.assert_array_equal(decode_sample(raw, image_frames=n)["images"], full[-2 * n :])
    assert len(decode_sample(raw, decode_images=False, image_frames=1)["images"]) == 2
    for bad in (0, 4):
        with pytest.raises(ValueError, match=r"image_frames: expected 1 \.\. 3"):
            decode_sample(raw, image_frames=bad)


def test_missing_member_names_shard_sample_and_member():
    raw = encode_sample(make_sample("abcdef0123456702", np.random.default_rng(2)))
    del raw["arrays.npy"]
    with pytest.raises(
        SampleFormatError, match=r"shard s-7\.tar sample abcdef0123456702: missing member 'arrays.npy'"
    ):
        decode_sample({**raw, "__url__": "s-7.tar"})


def test_non_finite_and_inconsistent_k_are_rejected():
    rng = np.random.default_rng(3)
    bad = make_sample("abcdef0123456703", rng)
    bad.candidates[0, 0, 0] = np.nan
    with pytest.raises(SampleFormatError, match="candidates contains non-finite"):
        encode_sample(bad)
    sample = make_sample("abcdef0123456704", rng, k=6)
    arrays = {name: getattr(sample, name) for name in ARRAY_FIELDS}
    raw = {**encode_sample(sample), "arrays.npy": encode_arrays({**arrays, "sources": np.zeros(5, np.uint8)})}
    with pytest.raises(SampleFormatError, match="sources has K=5, other members have 6"):
        decode_sample(raw)
    raw["arrays.npy"] = encode_arrays({k: v for k, v in arrays.items()} | {"human": np.zeros((7, 3))})
    with pytest.raises(SampleFormatError, match=r"human has shape \(7, 3\), expected \(8, 3\)"):
        decode_sample(raw)


def test_arrays_member_is_plain_numpy():
    sample = make_sample("abcdef0123456705", np.random.default_rng(5), k=4)
    record = np.load(io.BytesIO(encode_sample(sample)["arrays.npy"]))
    np.testing.assert_array_equal(record["candidates"], sample.candidates.astype(np.float32))
    assert record["driving_command"].dtype == np.uint8


def test_shards_are_byte_identical(tmp_path):
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    for path, rng in ((tmp_path / "a.tar", rng_a), (tmp_path / "b.tar", rng_b)):
        with open(path, "wb") as fh, ShardWriter(fh) as writer:
            for i in range(3):
                writer.write(encode_sample(make_sample(f"abcdef01234567{i:02d}", rng)))
    assert sha256_file(tmp_path / "a.tar") == sha256_file(tmp_path / "b.tar")


def test_manifest_errors_name_file_and_field(tmp_path):
    write_build(tmp_path, 1, 2)
    manifest = (tmp_path / "manifest.json").read_text()
    (tmp_path / "manifest.json").write_text(manifest.replace('"traj_stats"', '"traj_statz"'))
    with pytest.raises(ValueError, match=r"manifest.json: manifest lacks fields \['traj_stats'\]"):
        read_manifest(tmp_path)


def test_writer_matches_webdataset_tarwriter():
    import webdataset as wds

    rng = np.random.default_rng(6)
    raws = [encode_sample(make_sample(f"abcdef01234567{i:02d}", rng)) for i in range(2)]
    ours, theirs = io.BytesIO(), io.BytesIO()
    with ShardWriter(ours) as writer:
        for raw in raws:
            writer.write(raw)
    with wds.TarWriter(theirs, user="", group="", mtime=0, encoder=False) as writer:
        for raw in raws:
            writer.write(raw)
    assert ours.getvalue() == theirs.getvalue()
