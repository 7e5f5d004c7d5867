"""Evaluation, the top floor: the navsim agent (`agent`), the evaluator (`evaluate`, its `records` and
`report`), the leaderboard `submission`, the `two_stage` split, the `score` CLI and `visualize`. It
imports the rest of the house; only CLIs, benchmarks and tests import it."""
