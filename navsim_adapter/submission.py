"""NAVSIM leaderboard submission pickles from a checkpoint, and a validator for them.

    python -m navsim_adapter.submission --checkpoint C --data-root D --split navtest --omega 1.0 \
        --team-name T --authors "A B" --email E --institution I --country C [--out submission.pkl]
    python -m navsim_adapter.submission --validate submission.pkl [--data-root D --split navtest]

v1 (navtest): `{"team_name", "authors", "email", "institution", "country / region",
"predictions": [{token: Trajectory}]}`. v2 two-stage splits use `first_stage_predictions` /
`second_stage_predictions` (`--format v2`, second stage read from `--second-stage-split`).
With navsim installed the Trajectory objects are navsim's own (what the leaderboard unpickles);
without it they are our stand-in (a warning says so). The policy is run non-privileged (cameras +
ego status only); best-of-N by the PDM oracle is refused, as the leaderboard refuses privileged agents.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

log = logging.getLogger("navsim_adapter.submission")
META_KEYS = ("team_name", "authors", "email", "institution", "country / region")
NUM_POSES, INTERVAL = 8, 0.5


@dataclass
class LocalTrajectory:
    """Stand-in for navsim.common.dataclasses.Trajectory when navsim is not installed."""

    poses: np.ndarray
    time_horizon: float = 4.0
    interval_length: float = 0.5


def make_trajectory(poses: np.ndarray):
    try:
        from navsim.common.dataclasses import Trajectory
        from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling
    except ImportError:
        return LocalTrajectory(np.asarray(poses, np.float32))
    return Trajectory(np.asarray(poses, np.float32), TrajectorySampling(time_horizon=4, interval_length=0.5))


def _predict(runner, loader, omega: float, batch_size: int) -> dict:
    from navsim_adapter.observation import scene_observation

    out = {}
    tokens = loader.tokens
    for start in tqdm(range(0, len(tokens), batch_size), desc="submission", unit="batch"):
        batch = tokens[start : start + batch_size]
        obs = [scene_observation(loader.get_scene(t), runner.spec) for t in batch]
        trajs = runner.sample(obs, [omega])[:, 0]
        for token, poses in zip(batch, trajs, strict=True):
            out[token] = make_trajectory(poses)
    return out


def create_submission(
    checkpoint: Path, data_root: Path, split: str, meta: dict[str, str], *, omega: float = 1.0, steps: int | None = None,
    out: Path = Path("submission.pkl"), second_stage_split: str | None = None, batch_size: int = 8, device: str = "cpu",
) -> Path:
    from navsim_adapter.observation import PolicyRunner
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    missing = [k for k in META_KEYS if not meta.get(k)]
    if missing:
        raise ValueError(f"submission metadata missing {missing} (the leaderboard requires all of {list(META_KEYS)})")
    try:
        import navsim  # noqa: F401
    except ImportError:
        warnings.warn("navsim is not installed: trajectories are pickled as navsim_adapter.submission.LocalTrajectory, "
                      "which the leaderboard cannot read. Install vla-dipole[navsim] for a real submission.", stacklevel=2)
    runner = PolicyRunner(checkpoint, steps, device)
    first = SceneLoader(split, data_root=data_root, scene_filter=SceneFilter(frame_interval=1))
    sub: dict = dict(meta)
    if second_stage_split is None:
        sub["predictions"] = [_predict(runner, first, omega, batch_size)]
    else:
        second = SceneLoader(second_stage_split, data_root=data_root, scene_filter=SceneFilter(frame_interval=1))
        sub["first_stage_predictions"] = [_predict(runner, first, omega, batch_size)]
        sub["second_stage_predictions"] = [_predict(runner, second, omega, batch_size)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(sub, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(out)
    return out


def validate_submission(path: Path, expected_tokens: Sequence[str] | None = None) -> dict[str, int]:
    """Reload and check keys, every expected token, (8, 3) finite poses. Returns counts; raises ValueError on a fault."""
    with Path(path).open("rb") as f:
        sub = pickle.load(f)  # noqa: S301 - validating a file the user made
    if not isinstance(sub, dict):
        raise ValueError(f"{path}: top level is {type(sub).__name__}, expected dict")
    missing = [k for k in META_KEYS if not sub.get(k)]
    if missing:
        raise ValueError(f"{path}: missing metadata {missing}")
    stages = [k for k in ("predictions", "first_stage_predictions", "second_stage_predictions") if k in sub]
    if not stages:
        raise ValueError(f"{path}: no 'predictions' (v1) or 'first_stage_predictions' (v2) key")
    counts = {}
    for stage in stages:
        preds = sub[stage]
        if not isinstance(preds, list) or not all(isinstance(p, dict) for p in preds):
            raise ValueError(f"{path}: '{stage}' must be a list of {{token: Trajectory}} dicts")
        merged = {t: tr for p in preds for t, tr in p.items()}
        for token, traj in merged.items():
            poses = np.asarray(getattr(traj, "poses", None))
            if poses.shape != (NUM_POSES, 3):
                raise ValueError(f"{path}: {stage}[{token}].poses has shape {poses.shape}, expected (8, 3)")
            if not np.isfinite(poses).all():
                raise ValueError(f"{path}: {stage}[{token}].poses has non-finite values")
        counts[stage] = len(merged)
    if expected_tokens is not None:
        main = "predictions" if "predictions" in sub else "first_stage_predictions"
        have = {t for p in sub[main] for t in p}
        lost = sorted(set(expected_tokens) - have)
        if lost:
            raise ValueError(f"{path}: {len(lost)} expected tokens missing from '{main}', e.g. {lost[:5]}")
    return counts


def main(argv: Sequence[str] | None = None) -> Path | dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m navsim_adapter.submission", description=__doc__.split("\n\n")[0])
    p.add_argument("--validate", type=Path, default=None, help="check an existing pickle instead of creating one")
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--split", default="navtest")
    p.add_argument("--second-stage-split", default=None, help="v2 two-stage: split of the second-stage scenes")
    p.add_argument("--omega", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--best-of", type=int, default=1)
    p.add_argument("--team-name")
    p.add_argument("--authors")
    p.add_argument("--email")
    p.add_argument("--institution")
    p.add_argument("--country")
    p.add_argument("--out", type=Path, default=Path("submission.pkl"))
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    from navsim_adapter.paths import openscene_data_root
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    if a.validate is not None:
        tokens = None
        if a.data_root is not None or a.split != "navtest":
            tokens = SceneLoader(a.split, data_root=openscene_data_root(a.data_root),
                                 scene_filter=SceneFilter(frame_interval=1)).tokens
        counts = validate_submission(a.validate, tokens)
        print(f"{a.validate}: OK " + ", ".join(f"{k}: {v} tokens" for k, v in counts.items()))
        return counts
    if a.best_of > 1:
        raise SystemExit("--best-of > 1 selects by the PDM score of the logged future: a privileged agent, "
                         "which the leaderboard refuses. Submit plain samples (best-of 1).")
    if a.checkpoint is None:
        raise SystemExit("--checkpoint is required to create a submission (or use --validate FILE)")
    meta = {"team_name": a.team_name, "authors": a.authors, "email": a.email, "institution": a.institution,
            "country / region": a.country}
    path = create_submission(a.checkpoint, openscene_data_root(a.data_root), a.split, meta, omega=a.omega,
                             steps=a.steps, out=a.out, second_stage_split=a.second_stage_split, device=a.device)
    counts = validate_submission(path)
    print(f"wrote {path}: " + ", ".join(f"{k}: {v} tokens" for k, v in counts.items()))
    return path


if __name__ == "__main__":
    main()
