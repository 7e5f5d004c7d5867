"""``python -m vla_dipole.verify_algo --out DIR [--quick]``: the DIPOLE bandit proof; exits 1 on FAIL."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from vla_dipole.verify_algo.report import format_tables, plot_samples, write_json
from vla_dipole.verify_algo.run import VARIANTS, VerifyConfig, run_verification


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vla_dipole.verify_algo", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder for results.json and samples.png")
    p.add_argument("--quick", action="store_true", help="reduced size (what the tests run)")
    p.add_argument(
        "--variant", choices=VARIANTS, default="dipole", help="deliberately broken variants must FAIL"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny nets: 1 is fastest)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    make = VerifyConfig.quick if args.quick else VerifyConfig
    cfg = make(variant=args.variant, seed=args.seed)
    if args.steps is not None:
        cfg.train = dataclasses.replace(cfg.train, steps=args.steps)
    res = run_verification(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    print(format_tables(res))
    print(f"wrote {write_json(res, args.out / 'results.json')}")
    print(f"wrote {plot_samples(res, cfg.bandit, args.out / 'samples.png')}")
    return 0 if res.passed else 1


if __name__ == "__main__":
    sys.exit(main())
