"""Score trajectories with the vectorised PDM engine and print a NAVSIM-style table.

    python -m navsim_adapter.evaluation.score --split test --data-root DIR --agent human
    python -m navsim_adapter.evaluation.score --split test --data-root DIR --trajectories preds.npz [--csv out.csv]
    python -m navsim_adapter.evaluation.score --metric-cache CACHE --agent constant_velocity

Trajectory files: `.npz` with `tokens` [B] and `trajectories` [B, 8, 3] or [B, N, 8, 3] (local to
each scene's current rear axle, 0.5 s steps). A pickle of {token: array} (or NAVSIM's submission dict
with "predictions": [{token: Trajectory}]) is read only with `--pickle-may-execute-code`: unpickling a
file runs whatever code it names, so only do it for files you made. `--csv` writes the first candidate's
scores per token with NAVSIM v2's columns (score = EPDMS) and its `average_all_frames` row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from navsim_adapter.baselines import constant_velocity_poses
from navsim_adapter.evaluation.records import score_fields
from navsim_adapter.evaluation.report import summarize, write_navsim_csv
from navsim_adapter.pdm.columns import LABELS, SCORE_NAMES, V1_COLUMNS, V2_COLUMNS
from navsim_adapter.safe_pickle import UNSAFE_FLAG, load_pickle
from vla_dipole import tables

AGENTS = ("human", "constant_velocity")


def load_trajectories(path: str | Path, pickle_may_execute_code: bool = False) -> dict[str, np.ndarray]:
    """token -> [N, 8, 3] candidates from an .npz file, or a pickle when the caller trusts it to run
    code (errors name the file and field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: trajectory file not found")
    if path.suffix != ".npz" and not pickle_may_execute_code:
        raise ValueError(
            f"{path}: not an .npz file. Trajectories are read from .npz ('tokens' [B], 'trajectories' "
            f"[B, (N,) 8, 3]); a pickle can run code when loaded, so it is read only with {UNSAFE_FLAG}"
        )
    if path.suffix == ".npz":
        data = np.load(path, allow_pickle=False)
        for key in ("tokens", "trajectories"):
            if key not in data:
                raise ValueError(
                    f"{path}: missing array {key!r} (expected 'tokens' [B] and 'trajectories' [B, (N,) 8, 3])"
                )
        tokens, trajs = [str(t) for t in data["tokens"]], np.asarray(data["trajectories"], dtype=np.float64)
        if len(trajs) != len(tokens):
            raise ValueError(f"{path}: 'trajectories' has {len(trajs)} rows, 'tokens' {len(tokens)}")
        items = dict(zip(tokens, trajs, strict=True))
    else:
        obj = load_pickle(path, may_execute_code=True)
        if isinstance(obj, dict) and "predictions" in obj:
            obj = {k: v for d in obj["predictions"] for k, v in d.items()}
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a dict token -> trajectory, got {type(obj).__name__}")
        items = {str(k): np.asarray(getattr(v, "poses", v), dtype=np.float64) for k, v in obj.items()}
    out = {}
    for tok, arr in items.items():
        if arr.shape[-2:] != (8, 3) or arr.ndim not in (2, 3):
            raise ValueError(
                f"{path}: trajectory of token {tok!r} has shape {arr.shape}, expected (8, 3) or (N, 8, 3)"
            )
        out[tok] = arr[None] if arr.ndim == 2 else arr
    return out


def agent_trajectory(ctx, agent: str) -> np.ndarray:
    """(1, 8, 3) trajectory of a built-in agent: the logged human, or constant velocity (NAVSIM's CV agent)."""
    if agent == "human":
        if ctx.human_trajectory is None:
            raise ValueError(f"scene {ctx.token}: no human trajectory (synthetic scene?)")
        return ctx.human_trajectory[None]
    return constant_velocity_poses(ctx.ego_state[3:5])[None]  # vx, vy in the ego frame


def records_of(result, tokens: list[str], row: str) -> list[dict]:
    """The first candidate of each scene as evaluation records (what the evaluator's CSVs are made of)."""
    return [
        {"row": row, "token": tok, "valid": bool(result.valid[i, 0]), **score_fields(result, i, 0)}
        for i, tok in enumerate(tokens)
    ]


def format_table(records: list[dict], candidates: int) -> str:
    """Mean of each score over the valid scenes (first candidate), with NAVSIM's column names."""
    summary = summarize(records)[records[0]["row"]]
    rows = [
        (LABELS[key], V2_COLUMNS.get(key, V1_COLUMNS.get(key, key) + " (v1)"), summary[key] / 100.0)
        for key in SCORE_NAMES
    ]
    table = tables.format_table(["metric", "column", "mean"], rows, formats=".4f")
    return f"{table}\nscenes: {len(records)}   candidates per scene: {candidates}"


def _contexts(args) -> list:
    if args.metric_cache:
        from navsim_adapter.pdm.metric_cache import load_contexts

        return load_contexts(args.metric_cache, args.tokens, progress=not args.quiet)
    from tqdm import tqdm

    from navsim_adapter.pdm import build_context
    from navsim_adapter.scene_loader import SceneFilter, SceneLoader

    loader = SceneLoader(
        args.split,
        data_root=args.data_root,
        scene_filter=SceneFilter(max_scenes=args.max_scenes, tokens=args.tokens),
    )
    return [
        build_context(loader.get_scene(t)) for t in tqdm(loader.tokens, desc="scenes", disable=args.quiet)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m navsim_adapter.evaluation.score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--trajectories", help=".npz of trajectories per token (see the module doc)")
    p.add_argument(
        UNSAFE_FLAG,
        action="store_true",
        help="also read a pickle --trajectories file; unpickling runs any code in it: only for files you made",
    )
    src.add_argument("--agent", choices=AGENTS, default=None, help="score a built-in agent instead of a file")
    p.add_argument("--split", default="test", help="OpenScene split of our scenes (with --data-root)")
    p.add_argument("--data-root", default=None, help="OpenScene data root (default $OPENSCENE_DATA_ROOT)")
    p.add_argument(
        "--metric-cache", default=None, help="score on a NAVSIM metric cache instead (needs navsim)"
    )
    p.add_argument("--max-scenes", type=int, default=None)
    p.add_argument("--tokens", nargs="*", default=None)
    p.add_argument("--no-human-filter", action="store_true", help="disable the v2 human filter")
    p.add_argument("--csv", default=None, help="write per-token scores here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    from navsim_adapter.pdm import SCORER_VERSION, score

    try:
        trajs = (
            load_trajectories(args.trajectories, args.pickle_may_execute_code) if args.trajectories else None
        )
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    if trajs is not None and args.tokens is None:
        args.tokens = list(trajs)
    contexts = _contexts(args)
    if trajs is not None:
        missing = [c.token for c in contexts if c.token not in trajs]
        if missing:
            p.error(f"{args.trajectories}: no trajectory for token(s) {missing[:5]}")
        n = max(len(trajs[c.token]) for c in contexts)
        batch = np.full((len(contexts), n, 8, 3), np.nan)
        for i, c in enumerate(contexts):
            batch[i, : len(trajs[c.token])] = trajs[c.token]
    else:
        batch = np.stack([agent_trajectory(c, args.agent or "human") for c in contexts])
    result = score(
        contexts, batch, human_filter=not args.no_human_filter, on_invalid="zero", return_states=False
    )
    name = args.agent or Path(args.trajectories).stem
    records = records_of(result, [c.token for c in contexts], name)
    print(f"PDM scorer {SCORER_VERSION}: {args.agent or args.trajectories}")
    print(format_table(records, batch.shape[1]))
    if args.csv:
        write_navsim_csv(Path(args.csv), records, "v2")
        print(f"wrote {args.csv} (NAVSIM v2 columns, score = EPDMS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
