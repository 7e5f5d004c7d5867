"""Evaluation, the top floor: the navsim agent, the evaluator and its report, the submission, the
two-stage split and the score CLI. It imports the rest of the house; only CLIs and tests import it."""
