"""One observation spec: what a model reads is its preset's ``observation`` section, and nothing else.

The shard builder (``build_shards --model``), training (``bind_to_shards`` at start), the evaluator and
the NAVSIM agent (the saved policy's ``policy_config.yaml``) all read it from there. Shards store
``history_frames`` frames of images and ego status per camera at one stored image size; a model reads
``observation.cameras``, the last ``observation.history_frames`` image frames and the last
``observation.ego_history`` ego frames. A mismatch is an error at start that names both values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vla_dipole.model.config import CONFIG_FILE, ObservationConfig, PolicyConfig


class ObservationMismatch(ValueError):
    """Shards that do not hold what the model reads."""


def load_model_config(model: str | Path) -> PolicyConfig:
    """A preset name, a model YAML, or a saved policy directory (its ``policy_config.yaml``)."""
    path = Path(model)
    if path.is_dir():
        return PolicyConfig.from_yaml(path / CONFIG_FILE)
    return PolicyConfig.preset(str(model))


def shard_settings(obs: ObservationConfig) -> dict[str, Any]:
    """``build_shards`` keyword arguments that store exactly what ``obs`` reads."""
    settings: dict[str, Any] = {"cameras": list(obs.cameras), "history_frames": obs.stored_frames}
    if obs.image_size is not None:
        settings["image_size"] = tuple(obs.image_size)
    if obs.jpeg_quality is not None:
        settings["jpeg_quality"] = obs.jpeg_quality
    return settings


def check_shards(obs: ObservationConfig, manifest: dict[str, Any], shards: str, model: str) -> None:
    """Raise ``ObservationMismatch`` naming the shards' and the model's value when the shards lack an input."""
    image = manifest.get("image") or {}
    lacking = [k for k in ("cameras", "history_frames", "size") if k not in image]
    if lacking:
        raise ObservationMismatch(f"shards {shards}: manifest.json field 'image' lacks {lacking}")
    where = f"shards {shards} (manifest image.{{}}) vs model {model} (observation.{{}})"
    missing = [c for c in obs.cameras if c not in image["cameras"]]
    if missing:
        raise ObservationMismatch(
            f"{where.format('cameras', 'cameras')}: the shards store cameras {image['cameras']}, the model "
            f"reads {list(obs.cameras)}; rebuild the shards with build_shards --model"
        )
    if int(image["history_frames"]) < obs.stored_frames:
        raise ObservationMismatch(
            f"{where.format('history_frames', 'history_frames / ego_history')}: the shards store "
            f"{image['history_frames']} history frames, the model reads history_frames={obs.history_frames}, "
            f"ego_history={obs.ego_history}; rebuild the shards with build_shards --model"
        )
    stored_image = {"image_size": [int(v) for v in image["size"]], "jpeg_quality": image.get("quality")}
    for key, field in (("image_size", "size"), ("jpeg_quality", "quality")):
        want, stored = getattr(obs, key), stored_image[key]
        if (
            want is not None
            and stored is not None
            and (list(want) if key == "image_size" else want) != stored
        ):
            raise ObservationMismatch(
                f"{where.format(field, key)}: the shards store {key}={stored}, the model reads {key}={want}"
            )


def require_complete(config_file: Path) -> None:
    """A saved policy states every observation field (a default filled in on load could silently feed it
    another input than it was trained on): a missing one is an error naming the file and the field."""
    import dataclasses

    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(OmegaConf.load(config_file)).get("observation") or {}
    for f in dataclasses.fields(ObservationConfig):
        if f.name not in saved:
            raise ValueError(
                f"{config_file}: field 'observation.{f.name}' missing; a policy directory must state "
                f"everything the policy reads (saved by an older version? add it, e.g. {f.name}: null)"
            )


def bind_to_shards(config: PolicyConfig, manifest: dict[str, Any], shards: str) -> None:
    """Check the shards against the model, then record their stored image size / JPEG quality in the
    model config (saved with the policy: evaluation rebuilds the same input from a scene)."""
    obs = config.observation
    check_shards(obs, manifest, shards, config.name)
    obs.image_size = [int(v) for v in manifest["image"]["size"]]
    obs.jpeg_quality = int(manifest["image"]["quality"])
