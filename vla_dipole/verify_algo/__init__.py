"""The DIPOLE algorithm proof on a 2-D continuous bandit (``python -m vla_dipole.verify_algo``).

Trains pi+ / pi- with the driving model's loss code (:mod:`vla_dipole.losses`) and sampler
(:mod:`vla_dipole.sampling`) and checks the omega-combined samples against the exact target
pi* ∝ mu·sigmoid(beta A + k)·exp(omega beta A).
"""

from vla_dipole.verify_algo.run import VARIANTS, Tolerances, VerifyConfig, VerifyResult, run_verification

__all__ = ["VARIANTS", "Tolerances", "VerifyConfig", "VerifyResult", "run_verification"]
