"""Batch PDM scoring: B scenes x N candidates -> one [B, N] array per sub-score.

Per scene the batch gets two extra rows, the PDM-Closed reference (progress normaliser) and the
logged human trajectory (v2 human filter); all rows of all scenes are simulated in one call, and
geometry + metrics run on chunks of scenes packed side by side (SceneBatch), so the number of numpy
calls does not grow with the number of scenes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from navsim_adapter.pdm import metrics as M
from navsim_adapter.pdm.batch import SceneBatch
from navsim_adapter.pdm.columns import RESULT_SCORES
from navsim_adapter.pdm.context import ScoringContext
from navsim_adapter.pdm.simulation import NUM_STEPS, STATE_DIM, TRAJ_POSES, interpolate_candidates, simulate

SCORER_VERSION = "pdm-navsim2.0.0-np1"
SIM_CHUNK = 2048  # rows simulated together: large enough to vectorise, small enough to stay in cache
GEOM_CHUNK = 24_000  # rows x (agents + 8) per geometry pass: bounds the [rows, steps, agents] arrays

# v2 weights (EPDMS) and v1 weights (PDMS).
W_EP, W_TTC, W_LK, W_HC, W_EC = 5.0, 5.0, 2.0, 2.0, 2.0
W1_EP, W1_TTC, W1_C = 5.0, 5.0, 2.0

# Per-row sub-scores that need no normalisation (stage 2 on the geometry of every row).
ROW_SCORES = ("nc", "dac", "ddc", "tlc", "ttc", "lk")
# Columns the v2 human filter may lift to 1 (a sub-score the logged human also fails).
FILTERED = ("nc", "dac", "ddc", "tlc", "ep", "ttc", "lk", "hc")


@dataclass
class PDMResult:
    """Scores [B, N] per sub-metric. `ec` is NaN when no previous-frame states were given (then
    EPDMS re-normalises without it, as NAVSIM does). `pdms` is NAVSIM v1's score, `epdms` v2's;
    `ep_v1` / `ttc_v1` / `ddc_v1` are v1's own EP, TTC and DDC (no human filter, v1 normalisation, TTC on
    every step, DDC also inside intersections; DDC has weight 0 in v1)."""

    nc: np.ndarray
    dac: np.ndarray
    ddc: np.ndarray
    tlc: np.ndarray
    ep: np.ndarray
    ttc: np.ndarray
    comfort: np.ndarray
    lk: np.ndarray
    hc: np.ndarray
    ec: np.ndarray
    pdms: np.ndarray
    epdms: np.ndarray
    ep_v1: np.ndarray
    ttc_v1: np.ndarray
    ddc_v1: np.ndarray
    valid: np.ndarray
    simulated_states: np.ndarray | None
    progress: np.ndarray  # raw centreline progress [m]
    timings: dict[str, float] = field(default_factory=dict)

    SUBSCORES: ClassVar[tuple[str, ...]] = RESULT_SCORES  # one [B, N] field each

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.SUBSCORES}


def _check_trajectories(contexts, trajectories, on_invalid) -> tuple[np.ndarray, np.ndarray]:
    traj = np.asarray(trajectories, dtype=np.float64)
    b = len(contexts)
    if traj.ndim != 4 or traj.shape[0] != b or traj.shape[2:] != (TRAJ_POSES, 3):
        raise ValueError(
            f"trajectories: expected shape [B={b}, N, {TRAJ_POSES}, 3] (x, y, heading local, 0.5 s), got {traj.shape}"
        )
    valid = np.isfinite(traj).all(axis=(2, 3))
    if not valid.all():
        if on_invalid == "raise":
            bi, ni = np.argwhere(~valid)[0]
            raise ValueError(
                f"trajectories: non-finite pose in scene {bi} (token {contexts[bi].token!r}), candidate {ni}; "
                "pass on_invalid='zero' to score such candidates 0 and flag them in PDMResult.valid"
            )
        if on_invalid != "zero":
            raise ValueError(f"on_invalid: expected 'raise' or 'zero', got {on_invalid!r}")
        traj = np.where(valid[..., None, None], traj, 0.0)
    return traj, valid


def _check_prev_states(prev, b: int, n: int) -> np.ndarray | None:
    if prev is None:
        return None
    prev = np.asarray(prev, dtype=np.float64)
    if prev.shape == (b, NUM_STEPS + 1, STATE_DIM):
        prev = np.broadcast_to(prev[:, None], (b, n, NUM_STEPS + 1, STATE_DIM))
    if prev.shape != (b, n, NUM_STEPS + 1, STATE_DIM):
        raise ValueError(
            f"prev_simulated_states: expected [B, {NUM_STEPS + 1}, {STATE_DIM}] or [B, N, {NUM_STEPS + 1}, "
            f"{STATE_DIM}] (previous frame's simulated states), got {prev.shape}"
        )
    return prev


def score(
    contexts: list[ScoringContext],
    trajectories: np.ndarray,
    *,
    human_filter: bool = True,
    prev_simulated_states: np.ndarray | None = None,
    on_invalid: Literal["raise", "zero"] = "raise",
    return_states: bool = True,
) -> PDMResult:
    """Score trajectories [B, N, 8, 3] (local to each scene's current rear axle, 0.5 s steps)."""
    traj, valid = _check_trajectories(contexts, trajectories, on_invalid)
    b, n = traj.shape[:2]
    prev = _check_prev_states(prev_simulated_states, b, n)
    timings = {"simulation": 0.0, "geometry": 0.0, "metrics": 0.0}

    # ---- simulation: all candidates + reference + human of all scenes in one batch ----------
    t0 = time.perf_counter()
    human = np.stack(
        [
            c.human_trajectory if c.human_trajectory is not None else np.zeros((TRAJ_POSES, 3))
            for c in contexts
        ]
    )
    ego = np.stack([c.ego_state for c in contexts])  # [B, 11]
    stamps = np.array([c.timestamp_us for c in contexts], dtype=np.int64)
    refs = interpolate_candidates(np.concatenate([traj, human[:, None]], 1), ego[:, :3], stamps)
    reference = np.stack([c.reference_poses for c in contexts])[:, None]
    rows = np.concatenate([refs[:, :n], reference, refs[:, n:]], 1).reshape(b * (n + 2), NUM_STEPS + 1, 3)
    inits = np.broadcast_to(ego[:, None], (b, n + 2, STATE_DIM)).reshape(b * (n + 2), STATE_DIM)
    states = np.concatenate(
        [simulate(rows[i : i + SIM_CHUNK], inits[i : i + SIM_CHUNK]) for i in range(0, len(rows), SIM_CHUNK)]
    ).reshape(b, n + 2, NUM_STEPS + 1, STATE_DIM)
    timings["simulation"] = time.perf_counter() - t0

    # Comfort-type metrics are per row: one batched pass over the candidates of all scenes.
    t1 = time.perf_counter()
    cand_states = states[:, :n].reshape(b * n, NUM_STEPS + 1, STATE_DIM)
    c = M.comfort(cand_states).reshape(b, n)
    hc = _history_comfort(contexts, states[:, :n])
    ec = (
        np.full((b, n), np.nan)
        if prev is None
        else M.extended_comfort(cand_states, prev.reshape(b * n, NUM_STEPS + 1, STATE_DIM)).reshape(b, n)
    )
    timings["metrics"] += time.perf_counter() - t1

    rows = _row_scores(contexts, states, timings)
    out = _aggregate(contexts, rows, n, human_filter, c, hc, ec)
    for k in PDMResult.SUBSCORES:
        out[k] = np.where(valid, out[k], 0.0)
    return PDMResult(
        **out,
        valid=valid,
        simulated_states=states[:, :n].copy() if return_states else None,
        progress=np.where(valid, rows["progress"][:, :n], 0.0),
        timings=timings,
    )


def _scene_chunks(contexts: list[ScoringContext], rows_per_scene: int):
    """Consecutive scene ranges whose geometry arrays stay around GEOM_CHUNK rows x steps x agents."""
    start, size = 0, 0
    for i, ctx in enumerate(contexts):
        cost = rows_per_scene * (ctx.num_agents + 8)
        if size and size + cost > GEOM_CHUNK:
            yield start, i
            start, size = i, 0
        size += cost
    yield start, len(contexts)


def _row_scores(contexts, states: np.ndarray, timings: dict[str, float]) -> dict[str, np.ndarray]:
    """Unnormalised sub-scores and raw progress [B, K] of every simulated row (K = N + 2)."""
    b, k = states.shape[:2]
    keys = ("nc", "dac", "ddc", "ddc_v1", "tlc", "ttc", "ttc_v1", "lk", "progress")
    out = {key: np.empty((b, k)) for key in keys}
    for lo, hi in _scene_chunks(contexts, k):
        t1 = time.perf_counter()
        batch = SceneBatch.from_contexts(contexts[lo:hi])
        st = states[lo:hi]
        g = M.batch_geometry(batch, st)
        t2 = time.perf_counter()
        out["nc"][lo:hi] = M.no_at_fault_collision(batch, st, g)
        out["dac"][lo:hi] = M.drivable_area_compliance(g)
        out["ddc"][lo:hi] = M.driving_direction_compliance(g)
        out["ddc_v1"][lo:hi] = M.driving_direction_compliance(g, exclude_intersections=False)
        out["tlc"][lo:hi] = M.traffic_light_compliance(g)
        out["ttc"][lo:hi] = M.time_to_collision(batch, st, g)
        # v1 has no human filter, no DDC/TLC and evaluates TTC on all steps.
        out["ttc_v1"][lo:hi] = M.time_to_collision(batch, st, g, full_horizon=True)
        out["lk"][lo:hi] = M.lane_keeping(g)
        out["progress"][lo:hi] = g.progress
        timings["geometry"] += t2 - t1
        timings["metrics"] += time.perf_counter() - t2
    return out


def _aggregate(contexts, rows, n, human_filter, c, hc, ec) -> dict[str, np.ndarray]:
    """Sub-scores [B, N] of the candidates (rows :n; row n = reference, n + 1 = human), EP
    normalisation, the v2 human filter and both aggregates, for all scenes at once."""
    nc, dac, progress = rows["nc"], rows["dac"], rows["progress"]
    multi = nc * dac * rows["ddc"] * rows["tlc"]
    ref, hum = n, n + 1
    s = {k: rows[k][:, :n] for k in ROW_SCORES}
    s["ep"] = M.normalized_progress(
        progress[:, :n], multi[:, :n], (progress[:, ref] * multi[:, ref])[:, None]
    )
    s["hc"] = hc

    # v1 PDMS from the unfiltered sub-scores.
    multi_v1 = nc * dac
    ep_v1 = M.normalized_progress_v1(
        progress[:, :n], multi_v1[:, :n], (progress[:, ref] * multi_v1[:, ref])[:, None]
    )
    pdms = nc[:, :n] * dac[:, :n] * (W1_EP * ep_v1 + W1_TTC * rows["ttc_v1"][:, :n] + W1_C * c)
    pdms = pdms / (W1_EP + W1_TTC + W1_C)

    # v2 human filter (original scenes with a logged future): a column the human fails is lifted to 1.
    # The human row is scored alone (EP normalised by itself) and without history comfort.
    applies = np.array(
        [human_filter and not x.is_synthetic and x.human_trajectory is not None for x in contexts]
    )
    human = {k: rows[k][:, hum] for k in ROW_SCORES}
    human["ep"] = M.normalized_progress(progress[:, hum], multi[:, hum], 0.0)
    human["hc"] = np.ones(len(contexts))
    for key in FILTERED:
        lift = applies & (human[key] == 0)
        s[key] = np.where(lift[:, None], 1.0, s[key])

    multi_c = s["nc"] * s["dac"] * s["ddc"] * s["tlc"]
    weighted = W_EP * s["ep"] + W_TTC * s["ttc"] + W_LK * s["lk"] + W_HC * s["hc"]
    no_ec = np.isnan(ec).all(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        epdms = np.where(
            no_ec,
            multi_c * weighted / (W_EP + W_TTC + W_LK + W_HC),
            multi_c * (weighted + W_EC * ec) / (W_EP + W_TTC + W_LK + W_HC + W_EC),
        )
    v1 = {"ep_v1": ep_v1, "ttc_v1": rows["ttc_v1"][:, :n], "ddc_v1": rows["ddc_v1"][:, :n]}
    return {**s, "comfort": c, "ec": ec, "pdms": pdms, "epdms": epdms, **v1}


def _history_comfort(contexts, cand_states: np.ndarray) -> np.ndarray:
    """HC [B, N]: scenes sharing a past length are scored in one batch."""
    b, n = cand_states.shape[:2]
    out = np.ones((b, n))
    groups: dict[int, list[int]] = {}
    for i, ctx in enumerate(contexts):
        if ctx.past_states is not None and len(ctx.past_states):
            groups.setdefault(len(ctx.past_states), []).append(i)
    for h, idx in groups.items():
        past = np.stack([contexts[i].past_states for i in idx])  # [G, H, 11]
        padded = np.concatenate(
            [np.broadcast_to(past[:, None], (len(idx), n, h, STATE_DIM)), cand_states[idx]], 2
        )
        out[idx] = M.comfort(padded.reshape(len(idx) * n, h + NUM_STEPS + 1, STATE_DIM)).reshape(len(idx), n)
    return out
