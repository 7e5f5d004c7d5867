"""`make bench` for navsim_adapter: scene reading, PDM scoring and evaluation throughput tables."""

from __future__ import annotations

import importlib
import sys

SECTIONS = (
    ("scene reader", "navsim_adapter.bench_scenes"),
    ("PDM-score engine", "navsim_adapter.pdm.bench"),
    ("evaluator", "navsim_adapter.bench_eval"),
)


def main(argv: list[str] | None = None) -> None:
    for title, module in SECTIONS:
        print(f"\n=== {title} ({module}) ===", flush=True)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            print(f"(skipped: {err})")
            continue
        mod.main([] if argv is None else list(argv))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
