"""`make bench` for vla_dipole: backbone, policy head / omega sweep and training throughput tables."""

from __future__ import annotations

import importlib

SECTIONS = (
    ("backbone ms/observation", "vla_dipole.model.bench_backbone"),
    ("policy head: one vs both branches, omega sweep", "vla_dipole.model.bench_policy"),
    ("training samples/s (1 proc, ZeRO-2, ZeRO-3, feature cache)", "vla_dipole.training.bench"),
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


if __name__ == "__main__":
    main()
