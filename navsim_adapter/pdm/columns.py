"""The names of the PDM scores, defined once: our keys, their NAVSIM csv columns (v2 `run_pdm_score*`
output and the v1 csv) and their printed labels. PDMResult's fields, the shards' score columns, the
evaluation records and every table derive from these."""

from __future__ import annotations

# The scores of every table and shard, in this order: NAVSIM v2's sub-scores (with v1's comfort), then
# v1's PDMS and v2's EPDMS. Shards store `candidate_scores[..., SCORE_NAMES.index(name)]`.
SCORE_NAMES: tuple[str, ...] = (
    "nc",
    "dac",
    "ddc",
    "tlc",
    "ep",
    "ttc",
    "comfort",
    "lk",
    "hc",
    "ec",
    "pdms",
    "epdms",
)
# v1's own EP, TTC and DDC (v1 csv only): PDMResult and the evaluation records carry them too.
V1_SCORE_NAMES: tuple[str, ...] = ("ep_v1", "ttc_v1", "ddc_v1")
RESULT_SCORES: tuple[str, ...] = SCORE_NAMES + V1_SCORE_NAMES

# v2 (EPDMS) csv columns, in NAVSIM's order; "score" is EPDMS after re-injecting EC.
V2_COLUMNS: dict[str, str] = {
    "nc": "no_at_fault_collisions",
    "dac": "drivable_area_compliance",
    "ddc": "driving_direction_compliance",
    "tlc": "traffic_light_compliance",
    "ep": "ego_progress",
    "ttc": "time_to_collision_within_bound",
    "lk": "lane_keeping",
    "hc": "history_comfort",
    "ec": "two_frame_extended_comfort",
    "epdms": "score",
}

# v1 (PDMS) csv columns, in navsim 1.1's order: v1's own EP, TTC and DDC (weight 0 in the score).
V1_COLUMNS: dict[str, str] = {
    "nc": "no_at_fault_collisions",
    "dac": "drivable_area_compliance",
    "ep_v1": "ego_progress",
    "ttc_v1": "time_to_collision_within_bound",
    "comfort": "comfort",
    "ddc_v1": "driving_direction_compliance",
    "pdms": "score",
}

# Short labels for printed tables.
LABELS: dict[str, str] = {
    "nc": "NC",
    "dac": "DAC",
    "ddc": "DDC",
    "tlc": "TLC",
    "ep": "EP",
    "ttc": "TTC",
    "comfort": "C",
    "lk": "LK",
    "hc": "HC",
    "ec": "EC",
    "pdms": "PDMS",
    "epdms": "EPDMS",
}
