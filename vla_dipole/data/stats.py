"""Trajectory normalisation statistics (mean / std of x, y, heading over human + candidate poses).

The builder stores them in the manifest's `traj_stats`; `python -m vla_dipole.data.stats OUT`
recomputes them from the shards (e.g. after editing shards by hand) and rewrites the manifest.
Normalising with them is `vla_dipole.data.normalize.TrajectoryStats`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_dipole.data.shard_io import TrajStatsAccumulator, read_manifest, shard_paths, write_manifest


def compute_stats(out: str | Path) -> dict[str, Any]:
    """Stream every shard of a build and return {"mean", "std", "count"}."""
    import webdataset as wds
    from tqdm import tqdm

    from vla_dipole.data.shard_format import decode_sample

    acc = TrajStatsAccumulator()
    manifest = read_manifest(out)
    dataset = wds.DataPipeline(wds.SimpleShardList(shard_paths(out, manifest)), wds.tarfile_to_samples())
    for raw in tqdm(dataset, total=manifest["num_samples"], desc="trajectory stats", unit="sample"):
        sample = decode_sample(raw, decode_images=False)
        acc.add(sample["human"])
        acc.add(sample["candidates"])
    return acc.result()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="shard directory (holding manifest.json)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not rewrite the manifest")
    args = parser.parse_args(argv)
    stats = compute_stats(args.out)
    print(
        f"traj_stats over {stats['count']} poses: mean {np.round(stats['mean'], 4).tolist()} "
        f"std {np.round(stats['std'], 4).tolist()}"
    )
    if not args.dry_run:
        manifest = read_manifest(args.out)
        manifest["traj_stats"] = stats
        write_manifest(args.out, manifest)


if __name__ == "__main__":
    main()
