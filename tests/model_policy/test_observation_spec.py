"""One observation spec: the model preset says what it reads; shards, training and saved policies follow it."""

from __future__ import annotations

import argparse

import pytest

from data_prep.build_shards import observation_settings
from vla_dipole.model.config import PolicyConfig
from vla_dipole.model.observation_spec import ObservationMismatch, bind_to_shards, check_shards


def _args(**kw) -> argparse.Namespace:
    base = dict(model=None, cameras=None, image_size=None, history_frames=None, jpeg_quality=None)
    return argparse.Namespace(**{**base, **kw})


def _manifest(cameras=("cam_f0",), frames=1, size=(224, 224), quality=90) -> dict:
    return {
        "image": {"cameras": list(cameras), "history_frames": frames, "size": list(size), "quality": quality}
    }


def test_build_shards_stores_what_the_model_reads():
    obs = PolicyConfig.preset("openvla-7b").observation
    got = observation_settings(_args(model="openvla-7b"))
    assert got["cameras"] == list(obs.cameras) and got["history_frames"] == max(obs.ego_history, 1) == 4
    assert list(got["image_size"]) == obs.image_size == [224, 224]
    assert observation_settings(_args())["history_frames"] == 1  # no model: the old defaults
    with pytest.raises(
        ValueError, match=r"--history-frames 1 contradicts --model openvla-7b.*history_frames=4"
    ):
        observation_settings(_args(model="openvla-7b", history_frames=1))
    with pytest.raises(ValueError, match=r"--image-size \(64, 64\) contradicts.*image_size=\(224, 224\)"):
        observation_settings(_args(model="openvla-7b", image_size="64x64"))


@pytest.mark.parametrize(
    "manifest, match",
    [
        (_manifest(frames=1), r"store 1 history frames, the model reads history_frames=1, ego_history=4"),
        (
            _manifest(cameras=("cam_l0",), frames=4),
            r"store cameras \['cam_l0'\], the model reads \['cam_f0'\]",
        ),
        (
            _manifest(frames=4, size=(64, 36)),
            r"image_size=\[64, 36\], the model reads image_size=\[224, 224\]",
        ),
    ],
)
def test_mismatch_names_both_values(manifest, match):
    cfg = PolicyConfig.preset("openvla-7b")
    with pytest.raises(ObservationMismatch, match=match):
        check_shards(cfg.observation, manifest, "shards/", cfg.name)


def test_binding_records_the_stored_image_in_the_policy_config():
    cfg = PolicyConfig.preset("tiny")
    assert cfg.observation.image_size is None
    bind_to_shards(cfg, _manifest(size=(64, 36), quality=80), "shards/")
    assert cfg.observation.image_size == [64, 36] and cfg.observation.jpeg_quality == 80
    with pytest.raises(ObservationMismatch, match="image_size=\\[32, 18\\]"):  # later shards must agree
        bind_to_shards(cfg, _manifest(size=(32, 18)), "round_1/")


def test_saved_policy_missing_an_observation_field_is_an_error(tiny_policy, tmp_path):
    from vla_dipole.model.policy import DipolePolicy

    out = tiny_policy.save_pretrained(tmp_path / "p")
    DipolePolicy.from_pretrained(out)  # complete
    config = out / "policy_config.yaml"
    config.write_text(config.read_text().replace("  image_size: null\n", ""))
    with pytest.raises(ValueError, match=r"policy_config.yaml: field 'observation.image_size' missing"):
        DipolePolicy.from_pretrained(out)
