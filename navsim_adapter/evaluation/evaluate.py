"""PDM-score evaluation of a checkpoint on any split we can read, with an omega sweep.

    python -m navsim_adapter.evaluation.evaluate --checkpoint C --data-root D --split S --omega 0,0.5,1,2,4 \
        [--steps N] [--best-of N [--selection consensus|oracle]] [--bc-checkpoint B] [--compare awr=A] \
        [--frame-interval 1] [--chunk i/N | --merge DIR...] [--threads 1] [--out DIR]

Every scene is run once through the backbone and sampled for all omegas in one call, alone and
with noise seeded from its observation: exactly what `DipoleAgent` returns for it inside navsim's
`run_pdm_score`. Constant-velocity and human-log-replay baselines are scored alongside. Per-token records go to
`OUT/records.jsonl` as they finish, so a killed run resumes where it stopped; a token that fails
(missing camera file, bad log) is recorded invalid with its error and the run goes on. Outputs:
NAVSIM-named CSVs per agent (`*_v1.csv` PDMS, `*_v2.csv` EPDMS), `summary.md`, `omega_curve.png`,
and BEV pictures of the worst scenes in `worst/`. `--chunk i/N` evaluates one slice (SLURM arrays);
`--merge DIR...` joins chunk outputs into one report. Details: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from navsim_adapter.baselines import constant_velocity
from navsim_adapter.evaluation import report
from navsim_adapter.evaluation.records import (
    RECORDS_FILE,
    SETTINGS_FILE,
    RecordWriter,
    chunk_tokens,
    invalid_records,
    latest_records,
    read_records,
    scored_records,
)
from vla_dipole.cli_options import add_sampling_args, positive_int
from vla_dipole.data.observation import scene_observation
from vla_dipole.inference import SELECTIONS, PolicyRunner, selection_score_fn, set_threads, to_numpy

log = logging.getLogger("navsim_adapter.evaluation.evaluate")


@dataclass
class EvalSettings:
    data_root: Path
    split: str
    out: Path
    checkpoint: Path | None = None
    omegas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    steps: int | None = None
    best_of: int = 1
    selection: str = "consensus"  # best-of-N pick: consensus | log_ratio (non-privileged) | oracle (PDM of the logged future)
    compare: dict[str, Path] = field(default_factory=dict)  # name -> checkpoint, sampled at omega 0
    batch_size: int = 8
    chunk: tuple[int, int] = (0, 1)
    max_scenes: int | None = None
    worst_k: int = 4
    seed: int = 0
    device: str = "cpu"
    frame_interval: int | None = None
    name: str = "dipole"
    metric_cache: Path | None = None  # real NAVSIM metric cache: contexts come from it


def parse_chunk(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--chunk expects i/N, got {text!r}") from err
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--chunk {text}: need 0 <= i < N")
    return i, n


class Evaluator:
    """Scores the baselines and every checkpoint x omega on the tokens of one chunk; see the module doc."""

    def __init__(self, s: EvalSettings):
        from navsim_adapter.scene_loader import SceneFilter, SceneLoader

        self.s = s
        self.loader = SceneLoader(
            s.split,
            data_root=s.data_root,
            scene_filter=SceneFilter(frame_interval=s.frame_interval, max_scenes=s.max_scenes),
        )
        self.runners: dict[str, PolicyRunner] = {}
        if s.checkpoint is not None:
            self.runners[s.name] = PolicyRunner.from_checkpoint(s.checkpoint, s.steps, s.device, s.seed)
        for name, ckpt in s.compare.items():
            self.runners[name] = PolicyRunner.from_checkpoint(ckpt, s.steps, s.device, s.seed)
        self.rows = ["constant_velocity", "human"]
        for name in self.runners:
            omegas = s.omegas if name == s.name else (0.0,)
            self.rows += [report.omega_row(name, o) for o in omegas]
        self.writer = RecordWriter(s.out / RECORDS_FILE)
        (s.out / SETTINGS_FILE).write_text(json.dumps(self.describe(), indent=2))
        self.specs = list(
            dict.fromkeys(r.spec for r in self.runners.values())
        )  # observations built per scene
        self.timings = {"prepare": 0.0, "policy": 0.0, "score": 0.0}  # seconds per stage (benchmarks)
        self._cache = None
        if s.metric_cache is not None:
            from navsim_adapter.pdm.metric_cache import MetricCacheIndex

            self._cache = MetricCacheIndex(s.metric_cache, "scoring with the metric cache")

    def context(self, scene):
        """The scene's ScoringContext: from the real metric cache when given, else from scene + map."""
        from navsim_adapter.pdm import build_context

        if self._cache is None:
            return build_context(scene)
        return self._cache.context(scene.token, scene.metadata.log_name)

    def describe(self) -> dict:
        """What produced these numbers (written to settings.json, echoed in summary.md)."""
        from navsim_adapter.pdm import SCORER_VERSION

        keys = (
            "checkpoint",
            "split",
            "data_root",
            "omegas",
            "steps",
            "best_of",
            "selection",
            "seed",
            "frame_interval",
        )
        d = {k: getattr(self.s, k) for k in keys}
        d.update(compare=self.s.compare, scenes=len(self.loader), scorer_version=SCORER_VERSION)
        return json.loads(json.dumps(d, default=str))

    def run(self) -> Path:
        """Evaluate every token of this chunk not yet in records.jsonl; returns the records path."""
        tokens = chunk_tokens(self.loader.tokens, self.s.chunk, self.s.batch_size)
        done = self.writer.done_tokens(self.rows)
        if done:
            log.info("resuming: %d of %d tokens already evaluated", len(done & set(tokens)), len(tokens))
        # fixed batch boundaries: a resumed run batches the remaining scenes exactly as a fresh run would
        batches = [tokens[i : i + self.s.batch_size] for i in range(0, len(tokens), self.s.batch_size)]
        with tqdm(total=len(tokens), desc="evaluate", unit="scene") as bar:
            for batch in batches:
                todo = [t for t in batch if t not in done]
                if todo:
                    self.writer.write(self.evaluate_tokens(todo))
                bar.update(len(batch))
        return self.writer.path

    def evaluate_tokens(self, tokens: Sequence[str]) -> list[dict]:
        """Records of every row for `tokens`: one policy call per checkpoint, one PDM call for all rows.

        A token whose scene, observation or score fails is recorded invalid with its error; if the
        batched policy / scoring call itself fails, the tokens are retried one by one so only the
        culprit is lost.
        """
        records: list[dict] = []
        scenes, contexts, obs = [], [], []
        t0 = time.perf_counter()
        for token in tokens:
            try:
                scene = self.loader.get_scene(token)
                ctx = self.context(scene)
                ob = {spec: scene_observation(scene, spec) for spec in self.specs}
            except Exception as err:  # noqa: BLE001 - one bad token must not abort the run
                records += self._invalid(token, err)
                continue
            scenes.append(scene)
            contexts.append(ctx)
            obs.append(ob)
        self.timings["prepare"] += time.perf_counter() - t0
        if not scenes:
            return records
        try:
            return records + self._score(scenes, contexts, obs)
        except Exception as err:  # noqa: BLE001
            if len(scenes) == 1:
                return records + self._invalid(scenes[0].token, err)
        for i in range(len(scenes)):  # isolate the failing token(s)
            try:
                records += self._score(scenes[i : i + 1], contexts[i : i + 1], obs[i : i + 1])
            except Exception as err:  # noqa: BLE001
                records += self._invalid(scenes[i].token, err)
        return records

    def _invalid(self, token: str, err: BaseException) -> list[dict]:
        log.warning("token %s invalid: %s: %s", token, type(err).__name__, err)
        log.debug("%s", traceback.format_exc())
        return invalid_records(token, self.rows, f"{type(err).__name__}: {err}")

    def _score(self, scenes, contexts, obs) -> list[dict]:
        from navsim_adapter.pdm import score

        t0 = time.perf_counter()
        trajs = self._trajectories(scenes, contexts, obs)
        t1 = time.perf_counter()
        result = score(contexts, trajs, on_invalid="zero", return_states=True)
        self.timings["policy"] += t1 - t0
        self.timings["score"] += time.perf_counter() - t1
        # states first: a record in records.jsonl always has its states on disk (EC pass)
        report.save_states(self.s.out, [s.token for s in scenes], self.rows, result.simulated_states)
        return [
            rec
            for b, (scene, ctx) in enumerate(zip(scenes, contexts, strict=True))
            for rec in scored_records(scene, ctx, self.rows, result, b, trajs)
        ]

    def _trajectories(self, scenes, contexts, obs) -> np.ndarray:
        """[B, rows, 8, 3]: constant velocity, human, then each checkpoint's omegas (one sample call each)."""
        cols = [
            np.stack([constant_velocity(s) for s in scenes]),
            np.stack([s.get_future_trajectory(8) for s in scenes]),
        ]
        score_fn = None
        if self.s.best_of > 1:
            if self.s.selection == "oracle":
                score_fn = [self._oracle([c]) for c in contexts]
            else:
                score_fn = selection_score_fn(self.s.selection)
        for name, runner in self.runners.items():
            omegas = self.s.omegas if name == self.s.name else (0.0,)
            own = [o[runner.spec] for o in obs]
            sampled = runner.sample(own, omegas, best_of=self.s.best_of, score_fn=score_fn)
            cols += [sampled[:, i] for i in range(len(omegas))]
        return np.stack(cols, axis=1).astype(np.float64)

    @staticmethod
    def _oracle(contexts):
        """Best-of-N selection by our PDM engine: privileged (uses the logged future), an ablation only."""
        from navsim_adapter.pdm import score

        def fn(trajs) -> np.ndarray:
            return score(
                contexts, to_numpy(trajs).astype(np.float64), on_invalid="zero", return_states=False
            ).pdms

        return fn


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m navsim_adapter.evaluation.evaluate", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--checkpoint", type=Path, help="policy checkpoint (save_pretrained dir)")
    p.add_argument("--name", default="dipole", help="row name of --checkpoint in the tables")
    p.add_argument("--data-root", type=Path, default=None, help="default $OPENSCENE_DATA_ROOT")
    p.add_argument("--split", default=None)
    add_sampling_args(p, omega=(0.0, 0.5, 1.0, 2.0, 4.0), sweep=True, what="of --checkpoint ")
    p.add_argument(
        "--best-of",
        type=positive_int,
        default=1,
        help="N samples per scene and omega, keep one (see --selection)",
    )
    p.add_argument(
        "--selection",
        choices=(*SELECTIONS, "oracle"),
        default="consensus",
        help="best-of-N pick: consensus = the sample closest to the others; log_ratio = highest "
        "pi+ / pi- density ratio (DIPOLE's implicit advantage; no critic): both non-privileged, as "
        "DipoleAgent's `selection`; "
        "oracle = best PDM score against the logged future (privileged upper bound)",
    )
    p.add_argument("--bc-checkpoint", type=Path, default=None, help="adds a 'bc' row (omega 0)")
    p.add_argument(
        "--compare", action="append", default=[], metavar="NAME=CKPT", help="more rows, e.g. awr=runs/awr"
    )
    p.add_argument("--metric-cache", type=Path, default=None, help="real NAVSIM metric cache (needs navsim)")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--chunk", type=parse_chunk, default=(0, 1), help="evaluate slice i of N (SLURM arrays)")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="join these chunk dirs into --out")
    p.add_argument("--max-scenes", type=int, default=None)
    p.add_argument("--frame-interval", type=int, default=None, help="1 = every frame (navtest style)")
    p.add_argument("--worst-k", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    a = _parse(argv)
    set_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.merge:
        records = read_records(d / RECORDS_FILE for d in a.merge)
        if not records:
            raise SystemExit(f"--merge: no records.jsonl with results under {[str(d) for d in a.merge]}")
        records = latest_records(records)
        first = next((d / SETTINGS_FILE for d in a.merge if (d / SETTINGS_FILE).is_file()), None)
        if first is not None and first.resolve() != (a.out / SETTINGS_FILE).resolve():
            (a.out / SETTINGS_FILE).write_text(first.read_text())
        RecordWriter(a.out / RECORDS_FILE).path.write_text("".join(json.dumps(r) + "\n" for r in records))
        path = report.write_report(a.out, records, worst_k=0, state_dirs=a.merge)
        print(path.read_text())
        report.require_valid_rows(records, path)
        return path
    if a.split is None:
        raise SystemExit("--split is required (e.g. navtest, or the synthetic split name)")
    compare = {}
    if a.bc_checkpoint:
        compare["bc"] = a.bc_checkpoint
    for spec in a.compare:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--compare expects NAME=CKPT, got {spec!r}")
        compare[name] = Path(path)
    from navsim_adapter.paths import openscene_data_root

    s = EvalSettings(
        data_root=openscene_data_root(a.data_root),
        split=a.split,
        out=a.out,
        checkpoint=a.checkpoint,
        omegas=a.omega,
        steps=a.steps,
        best_of=a.best_of,
        selection=a.selection,
        compare=compare,
        batch_size=a.batch_size,
        chunk=a.chunk,
        max_scenes=a.max_scenes,
        worst_k=a.worst_k,
        seed=a.seed,
        device=a.device,
        frame_interval=a.frame_interval,
        name=a.name,
        metric_cache=a.metric_cache,
    )
    ev = Evaluator(s)
    ev.run()
    records = latest_records(read_records([ev.writer.path]))
    path = report.write_report(a.out, records, ev.loader if s.chunk[1] == 1 else None, s.worst_k, s.name)
    print(path.read_text())
    report.require_valid_rows(records, path)
    return path


if __name__ == "__main__":
    main()
