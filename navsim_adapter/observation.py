"""What the policy sees of a scene, built exactly like a training sample, and a batched policy runner.

Evaluation must feed the policy the same observation it was trained on: same cameras, history
frames, resize and JPEG round trip as `data_prep.build_shards`. So we build a shard `Sample` from
the scene with the shard builder's own code and decode it the way the loader does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from navsim_adapter.scene import Scene

DEFAULT_OBSERVATION = {"cameras": ["cam_f0"], "image_size": [256, 144], "history_frames": 1}


@dataclass(frozen=True)
class ObservationSpec:
    """Cameras x history frames x image size a checkpoint was trained with."""

    cameras: tuple[str, ...] = ("cam_f0",)
    image_size: tuple[int, int] = (256, 144)  # (W, H)
    history_frames: int = 1

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path) -> ObservationSpec:
        """Read `observation.json` saved next to the weights by train.py (defaults if absent)."""
        path = Path(checkpoint) / "observation.json"
        spec = dict(DEFAULT_OBSERVATION)
        if path.exists():
            try:
                spec.update(json.loads(path.read_text()))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err}); expected cameras/image_size/history_frames") from err
        return cls(tuple(spec["cameras"]), tuple(int(v) for v in spec["image_size"]), int(spec["history_frames"]))


def scene_observation(scene: Scene, spec: ObservationSpec) -> dict[str, Any]:
    """The decoded training-sample dict of `scene` (images, ego status history, command, human future)."""
    from data_prep.build_shards import BuildSettings, _decoded_view, _scene_sample

    settings = BuildSettings(
        data_root="", split="", cameras=spec.cameras, image_size=spec.image_size,
        history_frames=spec.history_frames, sources=(), shard_size=1, limit=None, seed=0,
    )
    return _decoded_view(_scene_sample(scene, settings))


class PolicyRunner:
    """A checkpoint loaded once; `sample(observations, omegas)` -> [B, O, 8, 3] for every omega in one call."""

    def __init__(self, checkpoint: str | Path, num_steps: int | None = None, device: str = "cpu", seed: int = 0):
        import torch

        from vla_dipole.model.policy import DipolePolicy

        path = Path(checkpoint)
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {path} does not exist (expected a save_pretrained directory)")
        self.checkpoint = path
        self.device = torch.device(device)
        self.policy = DipolePolicy.from_pretrained(path).to(self.device).eval()
        self.spec = ObservationSpec.from_checkpoint(path)
        self.num_steps = num_steps
        self.seed = seed

    def sample(
        self,
        observations: Sequence[dict[str, Any]],
        omegas: Sequence[float],
        best_of: int = 1,
        score_fn: Callable[[np.ndarray], np.ndarray] | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        import torch

        from vla_dipole.data.collate import collate

        batch = collate(list(observations))
        generator = torch.Generator(device="cpu").manual_seed(self.seed if seed is None else seed)
        kwargs: dict[str, Any] = {"generator": generator}
        if self.num_steps is not None:
            kwargs["num_steps"] = self.num_steps
        if best_of > 1:
            kwargs.update(best_of=best_of, score_fn=score_fn)
        with torch.no_grad():
            inputs = self.policy.processor(batch, device=self.device)
            trajs = self.policy.sample(inputs, omegas=list(omegas), **kwargs)
        return trajs.detach().float().cpu().numpy()


def constant_velocity(scene: Scene, num_poses: int = 8, dt: float = 0.5) -> np.ndarray:
    """NAVSIM's ConstantVelocityAgent: straight ahead at the current speed."""
    speed = float(np.linalg.norm(scene.current_frame.ego_status.ego_velocity))
    poses = np.zeros((num_poses, 3), np.float64)
    poses[:, 0] = (np.arange(num_poses) + 1) * dt * speed
    return poses
