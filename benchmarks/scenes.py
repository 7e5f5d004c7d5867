"""How fast scenes come out of the reader: scenes per second with and without images.

    python -m benchmarks.scenes [--data-root DIR --split NAME] [--logs 4]

Without `--data-root` a small split is generated with `data_prep.synthesize` in a temp dir.
Rows: indexing (pickles read + validated), building scenes from the warm log cache, the
same plus the current front image, and plus every camera image the log has.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from navsim_adapter.scene import CAMERA_NAMES, Scene
from navsim_adapter.scene_loader import SceneFilter, SceneLoader
from vla_dipole import tables


def _touch_images(scene: Scene, cameras: tuple[str, ...]) -> int:
    cams = scene.current_frame.cameras
    return sum(getattr(cams, name).image is not None for name in cameras)


def _time(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def run(
    data_root: Path, split: str, scene_filter: SceneFilter | None = None, repeats: int = 3
) -> list[tuple[str, int, float]]:
    """(case, scenes, seconds) per case; the best of `repeats` runs."""
    scene_filter = scene_filter or SceneFilter(frame_interval=1)
    index_s, num = _time(
        lambda: len(SceneLoader(split, data_root=data_root, scene_filter=scene_filter)), repeats
    )
    loader = SceneLoader(split, data_root=data_root, scene_filter=scene_filter)

    def read(cameras: tuple[str, ...]) -> Callable[[], int]:
        def fn() -> int:
            n = 0
            for scene in loader.iter_scenes():
                scene.get_future_trajectory()
                scene.get_agent_input()
                _touch_images(scene, cameras)
                n += 1
            return n

        return fn

    rows = [("index split (read + validate pickles)", num, index_s)]
    for case, cams in (
        ("scenes, no images", ()),
        ("scenes + cam_f0 image", ("cam_f0",)),
        ("scenes + every camera image", CAMERA_NAMES),
    ):
        seconds, n = _time(read(cams), repeats)
        rows.append((case, n, seconds))
    return rows


def format_table(rows: list[tuple[str, int, float]], title: str) -> str:
    body = [(case, n, s, n / s if s > 0 else float("inf")) for case, n, s in rows]
    return tables.format_table(
        ["case", "scenes", "seconds", "scenes/s"], body, title=title, formats=["", "", ".3f", ".1f"]
    )


def main(argv: list[str] | None = None) -> list[tuple[str, int, float]]:
    parser = argparse.ArgumentParser(description="scene reader throughput")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--split", default="bench")
    parser.add_argument("--logs", type=int, default=4, help="logs to synthesize when no --data-root is given")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_scenes_") as tmp:
        root = args.data_root
        if root is None:
            from data_prep.synthesize import synthesize
            from data_prep.world.camera import RIG_YAW_DEG

            root = Path(tmp)
            # every camera rendered, so the last row reads all eight images of each frame
            synthesize(root, args.split, args.logs, seed=0, cameras=tuple(RIG_YAW_DEG))
        rows = run(root, args.split, repeats=args.repeats)
    print(
        format_table(
            rows,
            f"scene reader: split '{args.split}' under {root} (frame_interval=1, best of {args.repeats})",
        )
    )
    return rows


if __name__ == "__main__":
    main()
