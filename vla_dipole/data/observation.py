"""The ONE conversion from a scene's agent input to what the policy reads: the shard builder stores it,
the evaluator and the NAVSIM agent rebuild it bit for bit.

A policy must be fed at evaluation what it was trained on: the same cameras and history frames, each
image resized and JPEG-encoded at the stored size and quality. `encode_agent_input` does that once for
navsim's `AgentInput` and ours (`Scene.get_agent_input`) alike; the shard builder keeps its JPEG bytes,
`agent_input_observation` decodes them into the loader's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_dipole.data.shard_format import JPEG_QUALITY, NUM_POSES, decode_jpeg, encode_jpeg

DEFAULT_IMAGE_SIZE = (224, 224)  # the shard builder's default stored size
POLICY_INPUTS = ("images", "ego_pose", "ego_velocity", "ego_acceleration", "driving_command")
STATUS_FIELDS = POLICY_INPUTS[1:]


@dataclass(frozen=True)
class ObservationSpec:
    """Cameras x history frames x stored image size / JPEG quality a policy reads (and shards store).

    Evaluation rebuilds the exact training input: the cameras and frames the model reads, and the size
    and quality the shard builder resized + JPEG-encoded the images to before the model's own resize.
    """

    cameras: tuple[str, ...] = ("cam_f0",)
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE  # (W, H)
    history_frames: int = 1
    jpeg_quality: int = JPEG_QUALITY


@dataclass
class EncodedObservation:
    """The last `history_frames` frames of an agent input: JPEG bytes (history-major: for each frame,
    for each camera) and the stacked ego status arrays as the input holds them."""

    jpegs: list[bytes]
    status: dict[str, np.ndarray]


def encode_agent_input(agent_input: Any, spec: ObservationSpec) -> EncodedObservation:
    """Resize + JPEG-encode each camera of the last `spec.history_frames` frames; stack their ego status."""
    h = spec.history_frames
    jpegs = []
    for i, cams in enumerate(agent_input.cameras[-h:]):
        for cam in spec.cameras:
            image = getattr(cams, cam).image
            if image is None:
                raise ValueError(
                    f"history frame {i - h + 1}: camera {cam} has no image "
                    "(is it enabled in the sensor config / the log's cams entries?)"
                )
            jpegs.append(encode_jpeg(np.asarray(image), spec.image_size, spec.jpeg_quality))
    statuses = agent_input.ego_statuses[-h:]
    status = {key: np.stack([np.asarray(getattr(s, key)) for s in statuses]) for key in STATUS_FIELDS}
    return EncodedObservation(jpegs, status)


def decode_observation(
    jpegs: list[bytes], status: dict[str, np.ndarray], dtype: Any = None
) -> dict[str, Any]:
    """The loader's policy input dict: decoded images (N, h, w, 3) and the status arrays (cast to `dtype`)."""
    out: dict[str, Any] = {"images": np.stack([decode_jpeg(j) for j in jpegs])}
    for key in STATUS_FIELDS:
        out[key] = status[key] if dtype is None else np.asarray(status[key], dtype=dtype)
    return out


def agent_input_observation(agent_input: Any, spec: ObservationSpec) -> dict[str, Any]:
    """The policy input dict (docs/shards.md fields) of an AgentInput, navsim's or ours.

    Ego status is float32 (what navsim's EgoStatus and the shards hold), so the same scene gives the same
    arrays bit for bit through navsim's AgentInput and through ours.
    """
    encoded = encode_agent_input(agent_input, spec)
    return decode_observation(encoded.jpegs, encoded.status, np.float32)


def scene_agent_input(scene: Any, spec: ObservationSpec) -> Any:
    """Our scene's AgentInput with the spec's cameras and history frames."""
    return scene.get_agent_input(cameras=spec.cameras, history_indices=list(range(-spec.history_frames, 0)))


def scene_observation(scene: Any, spec: ObservationSpec) -> dict[str, Any]:
    """The policy input of `scene` (as `agent_input_observation`) plus its human future, token and log."""
    try:
        obs = agent_input_observation(scene_agent_input(scene, spec), spec)
    except ValueError as err:
        raise ValueError(f"scene {scene.token} (log {scene.metadata.log_name}): {err}") from err
    obs.update(
        human=scene.get_future_trajectory(NUM_POSES).astype(np.float32),
        token=scene.token,
        log_name=scene.metadata.log_name,
    )
    return obs
