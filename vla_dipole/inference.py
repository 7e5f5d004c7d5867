"""The ONE policy runner: a policy loaded once (from a checkpoint or handed over in memory) and sampled
for shard candidates, online rounds, the evaluator, the submission and the NAVSIM agent.

Two noise conventions, both fixed by the inputs alone (never by worker scheduling):

- `sample` (evaluation, submission, agent): every observation is sampled alone (a batch of one), with
  noise seeded by `observation_seed`, a hash of the run seed and the arrays the policy reads. navsim's
  AgentInput carries no token, so this is the only convention under which DipoleAgent inside navsim's
  run_pdm_score and our evaluator return the same trajectory for the same scene, bit for bit: the
  result does not depend on the batch, chunk or rerun (batching scenes together changes the floats at
  ~1e-4: CPU matmul kernels round differently for different row counts).
- `sample_batch` (shard candidates, online rounds): one batched call per chunk of scenes with one
  generator seeded by the caller (the builder derives it from the build seed and the chunk's first
  token), which is several times faster when K samples are drawn for every training scene.

Every call sweeps omegas at once: `eps = (1 + omega) eps+ - omega eps-` per omega, on the same noise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_dipole.data.collate import collate
from vla_dipole.data.observation import POLICY_INPUTS, ObservationSpec
from vla_dipole.data.shard_format import JPEG_QUALITY
from vla_dipole.model.config import ObservationConfig, PolicyConfig
from vla_dipole.model.policy import CONFIG_FILE, LOG_RATIO, DipolePolicy

OBSERVATION_FILE = "observation.json"  # stored image size of a policy never trained on shards
ScoreFn = Callable[[Any], np.ndarray]


def observation_spec(obs: ObservationConfig, where: Path | None = None) -> ObservationSpec | None:
    """The spec of a model's `observation` config (train.py records the training shards' image size /
    JPEG quality there). A policy never trained on shards (image_size null) takes the stored size from
    `where/observation.json` ({"image_size": [W, H], "jpeg_quality": Q}); without one the spec is None."""
    spec: dict[str, Any] = {"cameras": list(obs.cameras), "history_frames": obs.stored_frames}
    if obs.image_size is not None:
        spec.update(image_size=list(obs.image_size), jpeg_quality=obs.jpeg_quality or JPEG_QUALITY)
    elif where is not None and (where / OBSERVATION_FILE).is_file():
        override = where / OBSERVATION_FILE
        try:
            spec.update(json.loads(override.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{override}: not valid JSON ({err}); expected image_size [W, H], jpeg_quality"
            ) from err
    else:
        return None
    size = spec.get("image_size")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or min(int(v) for v in size) < 1:
        raise ValueError(f"{where}: observation field 'image_size' must be [W, H], got {size!r}")
    return ObservationSpec(
        tuple(spec["cameras"]),
        (int(size[0]), int(size[1])),
        int(spec["history_frames"]),
        int(spec.get("jpeg_quality", JPEG_QUALITY)),
    )


def checkpoint_spec(checkpoint: str | Path) -> ObservationSpec:
    """The observation spec of a saved policy: its `policy_config.yaml` `observation`, else `observation.json`."""
    path = Path(checkpoint)
    spec = observation_spec(PolicyConfig.from_yaml(path / CONFIG_FILE).observation, path)
    if spec is None:
        raise ValueError(
            f"{path / CONFIG_FILE}: field 'observation.image_size' is null (the policy was not trained on "
            f"shards) and {path / OBSERVATION_FILE} does not exist: expected one of them to give the "
            "stored image size [W, H]"
        )
    return spec


def observation_seed(seed: int, observation: dict[str, Any]) -> int:
    """The noise seed of one observation: a hash of `seed` and the arrays the policy reads (dtype-blind)."""
    digest = hashlib.sha256(f"vla-dipole:{seed}".encode())
    for key in POLICY_INPUTS:
        a = np.ascontiguousarray(observation[key], dtype=np.uint8 if key == "images" else np.float32)
        if a.dtype == np.float32:
            a = a + np.float32(0.0)  # -0.0 -> 0.0: navsim's relative current pose is -0.0 where ours is 0.0
        digest.update(f"{key}{a.shape}".encode())
        digest.update(a.tobytes())
    return int(digest.hexdigest()[:15], 16)


def consensus_scores(trajs: Any) -> np.ndarray:
    """Non-privileged best-of-N: prefer the sample closest to the others (the mode). [B, N, 8, 3] -> [B, N]."""
    xy = to_numpy(trajs)[..., :2]
    dist = np.linalg.norm(xy[:, :, None] - xy[:, None, :], axis=-1).mean(axis=-1)  # [B, N, N] mean over poses
    return -dist.mean(axis=-1)


# non-privileged best-of-N picks (the agent, the submission and the evaluator take the same names)
SELECTIONS = ("consensus", LOG_RATIO)


def selection_score_fn(selection: str) -> ScoreFn | str:
    """The `score_fn` of a best-of-N pick: consensus (the sample nearest the others) or `LOG_RATIO`
    (highest pi+ / pi- density ratio: DIPOLE's own advantage estimate, no critic)."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r}: expected one of {SELECTIONS}")
    return consensus_scores if selection == "consensus" else LOG_RATIO


def to_numpy(x: Any) -> np.ndarray:
    """Tensors (any device) or arrays -> numpy, for score functions handed torch trajectories."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def set_threads(threads: int | None) -> None:
    """torch intra-op threads; None keeps torch's default. On a shared CPU, 1 avoids thread thrashing."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


class PolicyRunner:
    """A policy in eval mode with its observation spec, denoising steps and run seed; see the module doc.

    `checkpoint` is the directory the weights were loaded from (None for a policy handed over in memory);
    `source` names them (that directory, or the caller's label); the shard builder records it.
    """

    def __init__(
        self,
        policy: DipolePolicy,
        spec: ObservationSpec | None = None,
        num_steps: int | None = None,
        seed: int = 0,
        source: str = "in-memory policy",
        checkpoint: Path | None = None,
    ):
        self.policy = policy.eval()
        self.spec = spec
        self.num_steps = num_steps
        self.seed = int(seed)
        self.source = source
        self.checkpoint = checkpoint

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        num_steps: int | None = None,
        device: str = "cpu",
        seed: int = 0,
        need_spec: bool = True,
    ) -> PolicyRunner:
        """Load a save_pretrained directory once with its observation spec (`checkpoint_spec`; an error
        when it has none, unless `need_spec` is False: the shard builder samples decoded shard samples)."""
        path = Path(checkpoint)
        if not path.is_dir():
            raise FileNotFoundError(
                f"checkpoint {path} does not exist (expected a save_pretrained directory)"
            )
        policy = DipolePolicy.from_pretrained(path, device=torch.device(device))
        spec = checkpoint_spec(path) if need_spec else observation_spec(policy.config.observation, path)
        return cls(policy, spec, num_steps, seed, source=str(path.resolve()), checkpoint=path)

    def sample(
        self,
        observations: Sequence[dict[str, Any]],
        omegas: Sequence[float],
        best_of: int = 1,
        score_fn: ScoreFn | str | Sequence[ScoreFn] | None = None,
    ) -> np.ndarray:
        """Trajectories [B, len(omegas), 8, 3], each observation alone with its own `observation_seed`;
        `score_fn` picks best-of-N (one function, one per observation, or `LOG_RATIO`: the policy's
        own pi+ / pi- ratio)."""
        many = isinstance(score_fn, Sequence) and not isinstance(score_fn, str)
        fns = list(score_fn) if many else [score_fn] * len(observations)
        if len(fns) != len(observations):
            raise ValueError(f"{len(fns)} score functions for {len(observations)} observations")
        out = []
        for ob, fn in zip(observations, fns, strict=True):
            kwargs: dict[str, Any] = {"num_steps": self.num_steps}
            if best_of > 1:
                kwargs.update(best_of=best_of, score_fn=fn)
            seed = observation_seed(self.seed, ob)
            out.append(self._call([ob], omegas, seed, **kwargs))
        return np.concatenate(out) if out else np.zeros((0, len(omegas), 8, 3), np.float32)

    def sample_batch(
        self,
        observations: Sequence[dict[str, Any]],
        omegas: Sequence[float],
        seed: int,
        num_samples: int = 1,
    ) -> np.ndarray:
        """Trajectories [B, len(omegas), 8, 3] from ONE batched call with one generator seeded `seed`;
        [B, len(omegas), N, 8, 3] with `num_samples` N > 1 independent draws per observation."""
        return self._call(list(observations), omegas, seed, num_steps=self.num_steps, num_samples=num_samples)

    def _call(
        self, observations: list[dict[str, Any]], omegas: Sequence[float], seed: int, **kwargs: Any
    ) -> np.ndarray:
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            trajs = self.policy.sample(
                collate(observations), omegas=list(omegas), generator=generator, **kwargs
            )
        return to_numpy(trajs.float()).astype(np.float32)
