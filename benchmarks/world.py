"""Synthetic-world speed table: simulation, rendering and whole-split generation.

    python -m benchmarks.world [--logs 8] [--frames 40] [--image-size 256x144]

Target: the demo split (20 logs x 40 frames x 3 cameras) in under a minute on 2 cores, i.e. at
least 0.35 logs/s with 2 workers.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from data_prep.synthesize import DEFAULT_CAMERAS, _image_size, synthesize
from data_prep.world.camera import make_camera
from data_prep.world.driver import EgoDriver, sample_style
from data_prep.world.render import SceneRenderer
from data_prep.world.scenarios import FAMILIES, build_scenario
from data_prep.world.simulate import simulate


def _row(cells: list) -> str:
    return "  ".join(f"{c:>22}" if isinstance(c, str) else f"{c:>22.2f}" for c in cells)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--image-size", type=_image_size, default=(256, 144))
    args = parser.parse_args(argv)

    print(_row(["family", "simulate ms/log", "render ms/image"]))
    cams = [make_camera(name, *args.image_size) for name in DEFAULT_CAMERAS]
    for k, family in enumerate(FAMILIES):
        rng = np.random.default_rng([0, k])
        scenario = build_scenario(family, rng, duration=args.frames * 0.5)
        t0 = time.perf_counter()
        frames = simulate(
            scenario, EgoDriver(scenario.plan, scenario.ego, sample_style(rng, 1.0), rng), args.frames
        )
        t1 = time.perf_counter()
        renderer = SceneRenderer(scenario.net)
        for f in frames:
            renderer.render(f.ego[:3], f.boxes, f.names, f.tracks, f.t, cams)
        t2 = time.perf_counter()
        print(_row([family, 1000 * (t1 - t0), 1000 * (t2 - t1) / (len(frames) * len(cams))]))

    print()
    print(_row(["workers", "seconds", "logs/s"]))
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            synthesize(
                tmp,
                "bench",
                args.logs,
                0,
                frames_per_log=args.frames,
                image_size=args.image_size,
                workers=workers,
                progress=False,
            )
            dt = time.perf_counter() - t0
        print(_row([str(workers), dt, args.logs / dt]))


if __name__ == "__main__":
    main()
