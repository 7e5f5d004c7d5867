"""Generate a synthetic NAVSIM split in the exact OpenScene on-disk layout.

    python -m data_prep.synthesize --out DIR --split NAME --logs N --seed S \
        [--frames 40] [--image-size 256x144] [--cameras CAM_F0,CAM_L0,CAM_R0] [--driver-noise 1.0]

writes, for each log:
  <out>/navsim_logs/<split>/<log_name>.pkl                 list of frame dicts (2 Hz)
  <out>/sensor_blobs/<split>/<log_name>/<CAM>/<token>.jpg  pinhole renders
  <out>/synthetic_maps/<map_name>.json                      the log's map (docs/synthetic_world.md)
  <out>/synthetic_ground_truth/<split>/<log_name>.json      exact driven poses, family, driver style
(the ground truth stays out of navsim_logs/<split>: the official reader unpickles every entry there)
Logs are deterministic in (split, seed, index): same arguments => byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import re
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.worker_guard import die_with_parent
from data_prep.world.camera import RIG_YAW_DEG, make_camera
from data_prep.world.driver import EgoDriver, sample_style
from data_prep.world.openscene import frame_dicts, global_ego_poses
from data_prep.world.render import SceneRenderer
from data_prep.world.scenarios import FAMILIES, build_scenario
from data_prep.world.simulate import LOG_EVERY, SIM_DT, simulate

DEFAULT_CAMERAS = ("CAM_F0", "CAM_L0", "CAM_R0")
DEFAULT_IMAGE_SIZE = (256, 144)
GROUND_TRUTH_DIR = "synthetic_ground_truth"
PICKLE_PROTOCOL = 4
JPEG_QUALITY = 90
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class LogJob:
    """Everything one worker needs to write one log."""

    out: str
    split: str
    seed: int
    index: int
    family: str
    frames: int
    image_size: tuple[int, int]
    cameras: tuple[str, ...]
    driver_noise: float
    variant: int = 0  # fixes the family's curve direction / junction exit (scenarios.build_scenario)

    @property
    def map_name(self) -> str:
        return f"synthetic-{self.split}-{self.seed}-{self.index:04d}"

    @property
    def log_name(self) -> str:
        return f"synthetic_{self.split}_s{self.seed}_{self.index:04d}_{self.family}"


def ground_truth_path(out: str | os.PathLike, split: str, log_name: str) -> Path:
    """Where a synthetic log's ground truth (exact poses, family, driver style) is written."""
    return Path(out) / GROUND_TRUTH_DIR / split / f"{log_name}.json"


def generate_log(job: LogJob) -> Path:
    """Simulate, render and write one log; returns the pickle's path."""
    rng = np.random.default_rng([job.seed, job.index, zlib.crc32(job.split.encode())])
    scenario = build_scenario(job.family, rng, duration=job.frames * LOG_EVERY * SIM_DT, variant=job.variant)
    style = sample_style(rng, job.driver_noise)
    origin = np.array([rng.uniform(3e5, 7e5), rng.uniform(3.5e6, 4.5e6), rng.uniform(-np.pi, np.pi)])
    start_us = int(1_600_000_000_000_000 + rng.integers(0, 10**14))
    frames = simulate(scenario, EgoDriver(scenario.plan, scenario.ego, style, rng), job.frames)

    out = Path(job.out)
    cams = [make_camera(name, *job.image_size) for name in job.cameras]
    # every frame lists all eight cameras (NAVSIM's reader expects them); only `cams` get images
    rig = [make_camera(name, *job.image_size) for name in RIG_YAW_DEG]
    dicts = frame_dicts(
        frames,
        log_name=job.log_name,
        map_name=job.map_name,
        route=scenario.route_roadblocks,
        origin=origin,
        cams=rig,
        start_us=start_us,
        salt=(job.split, job.seed, job.index),
    )

    map_path = out / "synthetic_maps" / f"{job.map_name}.json"
    map_path.parent.mkdir(parents=True, exist_ok=True)
    map_path.write_text(json.dumps(scenario.net.to_map_json(job.map_name, origin), separators=(",", ":")))

    blobs = out / "sensor_blobs" / job.split
    for cam in cams:
        (blobs / job.log_name / cam.name).mkdir(parents=True, exist_ok=True)
    renderer = SceneRenderer(scenario.net)
    for frame, d in zip(frames, dicts, strict=True):
        images = renderer.render(frame.ego[:3], frame.boxes, frame.names, frame.tracks, frame.t, cams)
        for name, image in images.items():
            image.save(blobs / d["cams"][name]["data_path"], format="JPEG", quality=JPEG_QUALITY)

    truth_path = ground_truth_path(out, job.split, job.log_name)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth = {
        "log_name": job.log_name,
        "map_name": job.map_name,
        "family": job.family,
        "variant": job.variant,
        "scenario": scenario.info,
        "driver_style": style.as_dict(),
        "route_roadblock_ids": scenario.route_roadblocks,
        "frame_tokens": [d["token"] for d in dicts],
        "timestamps_us": [d["timestamp"] for d in dicts],
        "ego_poses_global": global_ego_poses(frames, origin).tolist(),
        "ego_speed": [float(f.ego[3]) for f in frames],
        "driving_commands": [f.command for f in frames],
    }
    truth_path.write_text(json.dumps(truth, indent=1))
    log_path = out / "navsim_logs" / job.split / f"{job.log_name}.pkl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as fh:
        pickle.dump(dicts, fh, protocol=PICKLE_PROTOCOL)
    return log_path


def _check_options(
    split: str,
    num_logs: int,
    frames_per_log: int,
    image_size: tuple[int, int],
    cameras: tuple[str, ...],
    driver_noise: float,
    families: tuple[str, ...],
) -> None:
    if not _SAFE_NAME.match(split):
        raise ValueError(
            f"split {split!r}: expected letters, digits, '_', '-' or '.' (it becomes a folder name)"
        )
    if num_logs < 1:
        raise ValueError(f"num_logs must be >= 1, got {num_logs}")
    if frames_per_log < 2:
        raise ValueError(
            f"frames_per_log must be >= 2 (NAVSIM scenes need 14: 4 history + 10 future), got {frames_per_log}"
        )
    if len(image_size) != 2 or min(image_size) < 8:
        raise ValueError(f"image_size must be (width, height) with both >= 8, got {image_size}")
    unknown = [c for c in cameras if c not in RIG_YAW_DEG]
    if unknown or not cameras:
        raise ValueError(f"cameras {unknown or cameras}: expected names from {sorted(RIG_YAW_DEG)}")
    if not 0.0 <= driver_noise <= 5.0:
        raise ValueError(f"driver_noise must be in [0, 5], got {driver_noise}")
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ValueError(f"families {bad or families}: expected names from {FAMILIES}")


def synthesize(
    out: str | os.PathLike,
    split: str,
    num_logs: int,
    seed: int,
    *,
    frames_per_log: int = 40,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    cameras: tuple[str, ...] = DEFAULT_CAMERAS,
    driver_noise: float = 1.0,
    families: tuple[str, ...] = FAMILIES,
    workers: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write `num_logs` synthetic logs of `split` under `out`; returns the log pickles in index order.

    Log i plays scenario family `families[i % len(families)]`, so any split of at least
    `len(families)` logs contains every family. Its variant (curve direction, junction exit) is
    `i // len(families)` plus a per-family offset drawn from (split, seed): consecutive logs of a
    family take consecutive variants, so a split of `3 * len(families)` logs drives both curve
    directions and every exit (left / straight / right) of both junction families. `driver_noise` scales the logged driver's flaws.
    """
    cameras, families, image_size = tuple(cameras), tuple(families), tuple(int(v) for v in image_size)
    _check_options(split, num_logs, frames_per_log, image_size, cameras, driver_noise, families)
    offsets = np.random.default_rng([int(seed), zlib.crc32(split.encode()), 7]).integers(0, 6, len(families))
    jobs = [
        LogJob(
            str(out),
            split,
            int(seed),
            i,
            families[i % len(families)],
            frames_per_log,
            image_size,
            cameras,
            float(driver_noise),
            int(offsets[i % len(families)]) + i // len(families),
        )
        for i in range(num_logs)
    ]
    workers = min(num_logs, workers or os.cpu_count() or 1)
    paths: dict[int, Path] = {}
    bar = tqdm(total=num_logs, desc=f"synthesize {split}", unit="log", disable=not progress)
    if workers == 1:
        for job in jobs:
            paths[job.index] = generate_log(job)
            bar.update()
    else:
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {pool.submit(generate_log, job): job.index for job in jobs}
            for future in as_completed(futures):
                paths[futures[future]] = future.result()
                bar.update()
    bar.close()
    return [paths[i] for i in range(num_logs)]


def _image_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: expected WIDTHxHEIGHT, e.g. 256x144")
    return int(match.group(1)), int(match.group(2))


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synthesize", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="dataset root (becomes OPENSCENE_DATA_ROOT)")
    parser.add_argument("--split", required=True, help="split name, e.g. mini / trainval / test")
    parser.add_argument("--logs", type=int, required=True, help="number of logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--frames", type=int, default=40, help="frames per log at 2 Hz (>= 14 for NAVSIM scenes)"
    )
    parser.add_argument("--image-size", type=_image_size, default=DEFAULT_IMAGE_SIZE, help="WIDTHxHEIGHT")
    parser.add_argument(
        "--cameras",
        type=_names,
        default=DEFAULT_CAMERAS,
        help=f"comma-separated, from {','.join(RIG_YAW_DEG)} ('all' for every camera)",
    )
    parser.add_argument(
        "--driver-noise", type=float, default=1.0, help="strength of the logged driver's flaws (0 = clean)"
    )
    parser.add_argument(
        "--families", type=_names, default=FAMILIES, help=f"comma-separated, from {','.join(FAMILIES)}"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    cameras = tuple(RIG_YAW_DEG) if args.cameras == ("all",) else args.cameras
    try:
        paths = synthesize(
            args.out,
            args.split,
            args.logs,
            args.seed,
            frames_per_log=args.frames,
            image_size=args.image_size,
            cameras=cameras,
            driver_noise=args.driver_noise,
            families=args.families,
            workers=args.workers,
        )
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {len(paths)} logs to {Path(args.out) / 'navsim_logs' / args.split}")


if __name__ == "__main__":
    main()
