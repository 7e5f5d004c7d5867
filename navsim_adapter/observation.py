"""What the policy sees of a scene, built exactly like a training sample, and a batched policy runner.

Evaluation must feed the policy the same observation it was trained on: same cameras, history
frames, resize and JPEG round trip as `data_prep.build_shards`. So we build a shard `Sample` from
the scene with the shard builder's own code and decode it the way the loader does.
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

from data_prep.shard_format import JPEG_QUALITY
from navsim_adapter.scene import Scene

OBSERVATION_FILE = "observation.json"  # image size of a policy never trained on shards
DEFAULT_IMAGE_SIZE = (224, 224)  # data_prep.build_shards' default stored size
log = logging.getLogger("navsim_adapter.observation")
DETERMINISTIC_SOLVERS = ("ddim", "dpmsolver++")  # no per-step noise (DDIM eta = 0)


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


def scene_observation(scene: Scene, spec: ObservationSpec) -> dict[str, Any]:
    """The decoded training-sample dict of `scene` (images, ego status history, command, human future)."""
    from data_prep.build_shards import BuildSettings, decoded_view, scene_sample

    settings = BuildSettings(
        data_root="",
        split="",
        cameras=spec.cameras,
        image_size=spec.image_size,
        history_frames=spec.history_frames,
        sources=(),
        shard_size=1,
        limit=None,
        seed=0,
        jpeg_quality=spec.jpeg_quality,
    )
    return decoded_view(scene_sample(scene, settings))


def token_seed(seed: int, token: str) -> int:
    """A per-scene seed: a scene's samples do not depend on which batch (or chunk, or rerun) it is in."""
    return int(hashlib.sha256(f"{seed}:{token}".encode()).hexdigest()[:15], 16)


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
    """A checkpoint loaded once; `sample(observations, omegas)` -> [B, O, 8, 3] for every omega in one call.

    The backbone runs once per observation for all omegas (and best-of-N samples); both heads run in
    one branch-batched call per denoising step. The initial noise of each scene is drawn from its own
    generator seeded by (seed, token), so results are reproducible whatever the batching.
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
        # with a stochastic solver diffusers draws step noise for the whole batch from one generator
        self._per_scene_noise = self.policy.config.diffusion.solver in DETERMINISTIC_SOLVERS

    def sample(
        self,
        observations: Sequence[dict[str, Any]],
        omegas: Sequence[float],
        best_of: int = 1,
        score_fn: Callable[[Any], np.ndarray] | None = None,
        tokens: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Trajectories [B, len(omegas), 8, 3]; `tokens` (default the observations' "token") seed the noise."""
        import torch

        from vla_dipole.data.collate import collate

        batch = collate(list(observations))
        tokens = (
            list(tokens)
            if tokens is not None
            else batch.get("token") or [str(i) for i in range(len(observations))]
        )
        seeds = [token_seed(self.seed, t) for t in tokens]
        if self._per_scene_noise:
            generator: Any = [torch.Generator().manual_seed(s) for s in seeds]
        else:
            generator = torch.Generator().manual_seed(token_seed(self.seed, ",".join(tokens)))
        kwargs: dict[str, Any] = {"generator": generator, "num_steps": self.num_steps}
        if best_of > 1:
            kwargs.update(best_of=best_of, score_fn=score_fn)
        with torch.no_grad():
            trajs = self.policy.sample(batch, omegas=list(omegas), **kwargs)
        return to_numpy(trajs.float())


def consensus_scores(trajs: Any) -> np.ndarray:
    """Non-privileged best-of-N: prefer the sample closest to the others (the mode). [B, N, 8, 3] -> [B, N]."""
    xy = to_numpy(trajs)[..., :2]
    dist = np.linalg.norm(xy[:, :, None] - xy[:, None, :], axis=-1).mean(axis=-1)  # [B, N, N] mean over poses
    return -dist.mean(axis=-1)


def constant_velocity(scene: Scene, num_poses: int = 8, dt: float = 0.5) -> np.ndarray:
    """NAVSIM's ConstantVelocityAgent: straight ahead at the current speed."""
    speed = float(np.linalg.norm(scene.current_frame.ego_status.ego_velocity))
    poses = np.zeros((num_poses, 3), np.float64)
    poses[:, 0] = (np.arange(num_poses) + 1) * dt * speed
    return poses
