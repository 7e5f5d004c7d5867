"""NAVSIM leaderboard submission pickles from a checkpoint, and a validator for them.

    python -m navsim_adapter.evaluation.submission --checkpoint C --data-root D --split navtest --omega 1.0 \
        --team-name T --authors "A B" --email E --institution I --country C [--out submission.pkl]
    python -m navsim_adapter.evaluation.submission --validate submission.pkl [--data-root D --split navtest]

v1 (navtest): `{"team_name", "authors", "email", "institution", "country / region",
"predictions": [{token: Trajectory}]}`. v2 two-stage splits (`--second-stage-split S2`) write
`first_stage_predictions` / `second_stage_predictions` instead. With navsim installed the
Trajectory objects are navsim's own (what the leaderboard unpickles); without it they are our
stand-in (a warning says so). The policy runs non-privileged (cameras + ego status only; best-of-N
keeps the consensus sample); selecting by the PDM oracle is refused, as the leaderboard refuses
privileged agents. `--validate` reads the pickle with an allowlist of the classes a submission holds, so
a file from someone else cannot run code; `--pickle-may-execute-code` unpickles it fully.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from navsim_adapter.safe_pickle import UNSAFE_FLAG, load_pickle
from vla_dipole.cli_options import add_sampling_args, positive_int

log = logging.getLogger("navsim_adapter.evaluation.submission")
META_KEYS = ("team_name", "authors", "email", "institution", "country / region")
STAGES = ("predictions", "first_stage_predictions", "second_stage_predictions")
NUM_POSES, INTERVAL = 8, 0.5


@dataclass
class LocalTrajectory:
    """Stand-in for navsim.common.dataclasses.Trajectory when navsim is not installed."""

    poses: np.ndarray
    time_horizon: float = 4.0
    interval_length: float = 0.5


# where pickles find the stand-in (this module's import name, also when it runs as `python -m`)
LOCAL_TRAJECTORY = ("navsim_adapter.evaluation.submission", "LocalTrajectory")


def make_trajectory(poses: np.ndarray):
    try:
        from navsim.common.dataclasses import Trajectory
        from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling
    except ImportError:
        return LocalTrajectory(np.asarray(poses, np.float32))
    return Trajectory(np.asarray(poses, np.float32), TrajectorySampling(time_horizon=4, interval_length=0.5))


def _predict(
    runner, loader, omega: float, batch_size: int, best_of: int = 1, selection: str = "consensus"
) -> dict:
    """{token: Trajectory} for every scene of `loader`, from cameras + ego status only (non-privileged)."""
    from vla_dipole.data.observation import scene_observation
    from vla_dipole.inference import selection_score_fn

    out = {}
    tokens = loader.tokens
    score_fn = selection_score_fn(selection) if best_of > 1 else None
    for start in tqdm(range(0, len(tokens), batch_size), desc=f"predict {loader.split}", unit="batch"):
        batch = tokens[start : start + batch_size]
        obs = [scene_observation(loader.get_scene(t), runner.spec) for t in batch]
        trajs = runner.sample(obs, [omega], best_of=best_of, score_fn=score_fn)[:, 0]
        for token, poses in zip(batch, trajs, strict=True):
            out[token] = make_trajectory(poses)
    return out


def create_submission(
    checkpoint: Path,
    data_root: Path,
    split: str,
    meta: dict[str, str],
    *,
    omega: float = 1.0,
    steps: int | None = None,
    out: Path = Path("submission.pkl"),
    second_stage_split: str | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    best_of: int = 1,
    selection: str = "consensus",
) -> Path:
    """Predict every scene of `split` (and `second_stage_split` for the v2 two-stage format) and pickle it."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader
    from vla_dipole.inference import PolicyRunner

    missing = [k for k in META_KEYS if not meta.get(k)]
    if missing:
        raise ValueError(
            f"submission metadata missing {missing} (the leaderboard requires all of {list(META_KEYS)})"
        )
    try:
        import navsim  # noqa: F401
    except ImportError:
        warnings.warn(
            "navsim is not installed: trajectories are pickled as navsim_adapter.evaluation.submission.LocalTrajectory, "
            "which the leaderboard cannot read. Install vla-dipole[navsim] for a real submission.",
            stacklevel=2,
        )
    runner = PolicyRunner.from_checkpoint(checkpoint, steps, device)
    first = SceneLoader(split, data_root=data_root, scene_filter=SceneFilter(frame_interval=1))
    sub: dict = dict(meta)
    if second_stage_split is None:
        sub["predictions"] = [_predict(runner, first, omega, batch_size, best_of, selection)]
    else:
        second = SceneLoader(
            second_stage_split, data_root=data_root, scene_filter=SceneFilter(frame_interval=1)
        )
        sub["first_stage_predictions"] = [_predict(runner, first, omega, batch_size, best_of, selection)]
        sub["second_stage_predictions"] = [_predict(runner, second, omega, batch_size, best_of, selection)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(sub, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(out)
    return out


def validate_submission(
    path: Path, expected: Mapping[str, Sequence[str]] | None = None, pickle_may_execute_code: bool = False
) -> dict[str, int]:
    """Reload `path` and check metadata, format, (8, 3) finite poses, and every `expected[stage]` token.

    The pickle is read with an allowlist of the classes a submission holds (no code runs) unless
    `pickle_may_execute_code`. Returns {stage: number of tokens}; raises ValueError naming the file,
    the key and the token.
    """
    sub = load_pickle(path, pickle_may_execute_code, also_allowed={LOCAL_TRAJECTORY})
    if not isinstance(sub, dict):
        raise ValueError(f"{path}: top level is {type(sub).__name__}, expected dict")
    missing = [k for k in META_KEYS if not sub.get(k)]
    if missing:
        raise ValueError(f"{path}: missing metadata {missing}")
    stages = [k for k in STAGES if k in sub]
    if stages not in (["predictions"], ["first_stage_predictions", "second_stage_predictions"]):
        raise ValueError(
            f"{path}: expected key 'predictions' (v1) or both 'first_stage_predictions' and "
            f"'second_stage_predictions' (v2 two-stage), found {stages}"
        )
    counts = {}
    for stage in stages:
        merged = _stage_predictions(path, sub, stage)
        for token, traj in merged.items():
            poses = np.asarray(getattr(traj, "poses", None))
            if poses.shape != (NUM_POSES, 3):
                raise ValueError(f"{path}: {stage}[{token!r}].poses has shape {poses.shape}, expected (8, 3)")
            if not np.isfinite(poses).all():
                raise ValueError(f"{path}: {stage}[{token!r}].poses has non-finite values")
        lost = sorted(set((expected or {}).get(stage, ())) - set(merged))
        if lost:
            raise ValueError(f"{path}: {len(lost)} expected tokens missing from '{stage}', e.g. {lost[:5]}")
        counts[stage] = len(merged)
    return counts


def _stage_predictions(path: Path, sub: dict, stage: str) -> dict:
    preds = sub[stage]
    if not isinstance(preds, list) or not all(isinstance(p, dict) for p in preds):
        raise ValueError(f"{path}: '{stage}' must be a list of {{token: Trajectory}} dicts")
    return {t: tr for p in preds for t, tr in p.items()}


def expected_tokens(
    data_root: Path, split: str, second_stage_split: str | None = None
) -> dict[str, list[str]]:
    """The tokens a submission for `split` must contain (every frame-interval-1 scene, as NAVSIM's splits)."""
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    def tokens(name: str) -> list[str]:
        return SceneLoader(name, data_root=data_root, scene_filter=SceneFilter(frame_interval=1)).tokens

    if second_stage_split is None:
        return {"predictions": tokens(split)}
    return {"first_stage_predictions": tokens(split), "second_stage_predictions": tokens(second_stage_split)}


def main(argv: Sequence[str] | None = None) -> Path | dict:
    from vla_dipole.inference import SELECTIONS

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(
        prog="python -m navsim_adapter.evaluation.submission", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--validate", type=Path, default=None, help="check an existing pickle instead of creating one"
    )
    p.add_argument(
        UNSAFE_FLAG,
        action="store_true",
        help="--validate with full unpickling, which runs any code in the file: only for files you made",
    )
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--split", default="navtest")
    p.add_argument(
        "--second-stage-split", default=None, help="v2 two-stage: split of the second-stage scenes"
    )
    add_sampling_args(p, omega=1.0)
    p.add_argument("--best-of", type=positive_int, default=1, help="N samples, keep one (see --selection)")
    p.add_argument(
        "--selection",
        choices=(*SELECTIONS, "oracle"),
        default="consensus",
        help="best-of-N pick: consensus or log_ratio (non-privileged); oracle (PDM score against the "
        "logged future) is privileged and refused",
    )
    p.add_argument("--team-name")
    p.add_argument("--authors")
    p.add_argument("--email")
    p.add_argument("--institution")
    p.add_argument("--country")
    p.add_argument("--out", type=Path, default=Path("submission.pkl"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    from navsim_adapter.paths import openscene_data_root
    from vla_dipole.inference import set_threads

    set_threads(a.threads)
    if a.validate is not None:
        expected = None
        if a.data_root is not None or os.environ.get("OPENSCENE_DATA_ROOT"):
            expected = expected_tokens(openscene_data_root(a.data_root), a.split, a.second_stage_split)
        try:
            counts = validate_submission(a.validate, expected, a.pickle_may_execute_code)
        except ValueError as err:
            raise SystemExit(f"INVALID: {err}") from None
        checked = "every expected token present" if expected else "tokens not checked (no --data-root)"
        print(f"{a.validate}: OK ({checked}) " + ", ".join(f"{k}: {v} tokens" for k, v in counts.items()))
        return counts
    if a.selection == "oracle":
        raise SystemExit(
            "--selection oracle picks samples by the PDM score of the logged future: a privileged "
            "(scene-reading) agent, which the leaderboard refuses. Use --selection consensus."
        )
    if a.checkpoint is None:
        raise SystemExit("--checkpoint is required to create a submission (or use --validate FILE)")
    meta = {
        "team_name": a.team_name,
        "authors": a.authors,
        "email": a.email,
        "institution": a.institution,
        "country / region": a.country,
    }
    data_root = openscene_data_root(a.data_root)
    try:
        path = create_submission(
            a.checkpoint,
            data_root,
            a.split,
            meta,
            omega=a.omega,
            steps=a.steps,
            out=a.out,
            second_stage_split=a.second_stage_split,
            device=a.device,
            best_of=a.best_of,
            selection=a.selection,
        )
    except ValueError as err:
        raise SystemExit(str(err)) from None
    counts = validate_submission(path, expected_tokens(data_root, a.split, a.second_stage_split))
    print(f"wrote {path}: " + ", ".join(f"{k}: {v} tokens" for k, v in counts.items()))
    return path


if __name__ == "__main__":
    main()
