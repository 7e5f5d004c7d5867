"""What the policy sees of a scene, built exactly like a training sample, and a batched policy runner.

Evaluation must feed the policy the same observation it was trained on: same cameras, history
frames, resize and JPEG round trip as `data_prep.build_shards`. One conversion,
`agent_input_observation`, serves navsim's AgentInput (DipoleAgent) and our scenes (evaluator,
submission), and one noise convention, `observation_seed`, serves both: the same scene gives the
same trajectory wherever it is sampled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from navsim_adapter.scene import Scene
from vla_dipole.data.shard_format import JPEG_QUALITY

OBSERVATION_FILE = "observation.json"  # image size of a policy never trained on shards
DEFAULT_IMAGE_SIZE = (224, 224)  # data_prep.build_shards' default stored size
log = logging.getLogger("navsim_adapter.observation")


@dataclass(frozen=True)
class ObservationSpec:
    """Cameras x history frames x stored image size / JPEG quality a checkpoint was trained with.

    Evaluation must rebuild the exact training input: the cameras and frames the model reads, and
    the size and quality the shard builder resized + JPEG-encoded the images to before the model's
    own resize.
    """

    cameras: tuple[str, ...] = ("cam_f0",)
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE  # (W, H)
    history_frames: int = 1
    jpeg_quality: int = JPEG_QUALITY

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path) -> ObservationSpec:
        """Everything from the checkpoint's `policy_config.yaml` `observation` (train.py records the
        training shards' image size / JPEG quality there). A policy never trained on shards (image_size
        null) needs `observation.json` ({"image_size": [W, H], "jpeg_quality": Q}) next to its weights.
        """
        from vla_dipole.model.config import PolicyConfig
        from vla_dipole.model.policy import CONFIG_FILE

        path = Path(checkpoint)
        obs = PolicyConfig.from_yaml(path / CONFIG_FILE).observation
        spec: dict[str, Any] = {"cameras": list(obs.cameras), "history_frames": obs.stored_frames}
        if obs.image_size is not None:
            spec.update(image_size=list(obs.image_size), jpeg_quality=obs.jpeg_quality or JPEG_QUALITY)
        elif (path / OBSERVATION_FILE).is_file():
            override = path / OBSERVATION_FILE
            try:
                spec.update(json.loads(override.read_text()))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{override}: not valid JSON ({err}); expected image_size [W, H], jpeg_quality"
                ) from err
        else:
            raise ValueError(
                f"{path / CONFIG_FILE}: field 'observation.image_size' is null (the policy was not trained on "
                f"shards) and {path / OBSERVATION_FILE} does not exist: expected one of them to give the "
                "stored image size [W, H]"
            )
        size = spec.get("image_size")
        if not isinstance(size, (list, tuple)) or len(size) != 2 or min(int(v) for v in size) < 1:
            raise ValueError(f"{path}: observation field 'image_size' must be [W, H], got {size!r}")
        return cls(
            tuple(spec["cameras"]),
            (int(size[0]), int(size[1])),
            int(spec["history_frames"]),
            int(spec.get("jpeg_quality", JPEG_QUALITY)),
        )


POLICY_INPUTS = ("images", "ego_pose", "ego_velocity", "ego_acceleration", "driving_command")


def agent_input_observation(agent_input: Any, spec: ObservationSpec) -> dict[str, Any]:
    """The policy input dict (docs/shards.md fields) of an AgentInput: navsim's or ours, one conversion.

    `DipoleAgent` gets navsim's `AgentInput`; the evaluator and the submission get ours
    (`Scene.get_agent_input`). Both go through this function, so the same scene gives the same arrays
    bit for bit: the last `history_frames` frames, each camera resized + JPEG round-tripped like the
    shard builder does, ego status as float32 (what navsim's EgoStatus and the shards hold).
    """
    from vla_dipole.data.shard_format import decode_jpeg, encode_jpeg

    h = spec.history_frames
    images = []
    for i, cams in enumerate(agent_input.cameras[-h:]):
        for cam in spec.cameras:
            image = getattr(cams, cam).image
            if image is None:
                raise ValueError(
                    f"AgentInput history frame {i - h + 1}: camera {cam} has no image "
                    "(is it enabled in the sensor config / the log's cams entries?)"
                )
            images.append(decode_jpeg(encode_jpeg(np.asarray(image), spec.image_size, spec.jpeg_quality)))
    statuses = agent_input.ego_statuses[-h:]
    out: dict[str, Any] = {"images": np.stack(images)}
    for key in POLICY_INPUTS[1:]:
        out[key] = np.stack([np.asarray(getattr(s, key), dtype=np.float32) for s in statuses])
    return out


def scene_observation(scene: Scene, spec: ObservationSpec) -> dict[str, Any]:
    """The policy input of `scene` (as `agent_input_observation`) plus its human future, token and log."""
    agent_input = scene.get_agent_input(
        cameras=spec.cameras, history_indices=list(range(-spec.history_frames, 0))
    )
    try:
        obs = agent_input_observation(agent_input, spec)
    except ValueError as err:
        raise ValueError(f"scene {scene.token} (log {scene.metadata.log_name}): {err}") from err
    obs.update(
        human=scene.get_future_trajectory(8).astype(np.float32),
        token=scene.token,
        log_name=scene.metadata.log_name,
    )
    return obs


def observation_seed(seed: int, observation: dict[str, Any]) -> int:
    """The noise seed of one observation: a hash of `seed` and the arrays the policy reads.

    navsim's AgentInput carries no token, so the seed comes from what the agent sees: DipoleAgent
    inside navsim's run_pdm_score and our evaluator draw the same noise for the same scene, and a
    scene's samples do not depend on its batch, chunk or rerun.
    """
    digest = hashlib.sha256(f"vla-dipole:{seed}".encode())
    for key in POLICY_INPUTS:
        a = np.ascontiguousarray(observation[key], dtype=np.uint8 if key == "images" else np.float32)
        if a.dtype == np.float32:
            a = a + np.float32(0.0)  # -0.0 -> 0.0: navsim's relative current pose is -0.0 where ours is 0.0
        digest.update(f"{key}{a.shape}".encode())
        digest.update(a.tobytes())
    return int(digest.hexdigest()[:15], 16)


def set_threads(threads: int | None) -> None:
    """torch intra-op threads; None keeps torch's default. On a shared CPU, 1 avoids thread thrashing."""
    if threads is not None:
        import torch

        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def to_numpy(x: Any) -> np.ndarray:
    """Tensors (any device) or arrays -> numpy, for score functions handed torch trajectories."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


class PolicyRunner:
    """A checkpoint loaded once; `sample(observations, omegas)` -> [B, O, 8, 3] for every omega.

    One policy call per observation, alone (batch of one), for all its omegas (and best-of-N
    samples) at once, with noise seeded by `observation_seed`: exactly the call `DipoleAgent` makes
    inside navsim, so the evaluator, the submission and the agent give the same trajectory for the
    same scene bit for bit. (Batching scenes together changes the floats at ~1e-4: CPU matmul
    kernels round differently for different row counts.)
    """

    def __init__(
        self, checkpoint: str | Path, num_steps: int | None = None, device: str = "cpu", seed: int = 0
    ):
        import torch

        from vla_dipole.model.policy import DipolePolicy

        path = Path(checkpoint)
        if not path.is_dir():
            raise FileNotFoundError(
                f"checkpoint {path} does not exist (expected a save_pretrained directory)"
            )
        self.checkpoint = path
        self.device = torch.device(device)
        self.policy = DipolePolicy.from_pretrained(path, device=self.device).eval()
        self.spec = ObservationSpec.from_checkpoint(path)
        self.num_steps = num_steps
        self.seed = seed

    def sample(
        self,
        observations: Sequence[dict[str, Any]],
        omegas: Sequence[float],
        best_of: int = 1,
        score_fn: Callable[[Any], np.ndarray] | Sequence[Callable[[Any], np.ndarray]] | None = None,
    ) -> np.ndarray:
        """Trajectories [B, len(omegas), 8, 3]; `score_fn` picks best-of-N (one function, or one per observation)."""
        import torch

        from vla_dipole.data.collate import collate

        fns = list(score_fn) if isinstance(score_fn, Sequence) else [score_fn] * len(observations)
        if len(fns) != len(observations):
            raise ValueError(f"{len(fns)} score functions for {len(observations)} observations")
        out = []
        for ob, fn in zip(observations, fns, strict=True):
            kwargs: dict[str, Any] = {
                "generator": torch.Generator().manual_seed(observation_seed(self.seed, ob)),
                "num_steps": self.num_steps,
            }
            if best_of > 1:
                kwargs.update(best_of=best_of, score_fn=fn)
            with torch.no_grad():
                out.append(to_numpy(self.policy.sample(collate([ob]), omegas=list(omegas), **kwargs).float()))
        return np.concatenate(out)


def consensus_scores(trajs: Any) -> np.ndarray:
    """Non-privileged best-of-N: prefer the sample closest to the others (the mode). [B, N, 8, 3] -> [B, N]."""
    xy = to_numpy(trajs)[..., :2]
    dist = np.linalg.norm(xy[:, :, None] - xy[:, None, :], axis=-1).mean(axis=-1)  # [B, N, N] mean over poses
    return -dist.mean(axis=-1)


def constant_velocity(scene: Scene, num_poses: int = 8, dt: float = 0.5) -> np.ndarray:
    """NAVSIM's ConstantVelocityAgent: straight ahead at the current speed (float32, as its AgentInput holds)."""
    velocity = np.asarray(scene.current_frame.ego_status.ego_velocity, dtype=np.float32)
    speed = (velocity**2).sum(-1) ** 0.5
    poses = np.zeros((num_poses, 3), np.float32)
    poses[:, 0] = [(i + 1) * dt * speed for i in range(num_poses)]
    return poses.astype(np.float64)
