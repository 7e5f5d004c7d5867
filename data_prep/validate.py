"""Check a shard build end to end: every shard's sha256 and sample count against the manifest, every
sample decoded and checked against the schema (finite values, consistent K and H, images of the
configured size); then a summary with a reward histogram per candidate source.

    python -m data_prep.validate OUT [--reward pdms] [--no-images]

Exits non-zero and lists every problem (file, sample, field) when something is wrong.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_dipole.data.shard_format import SCORE_NAMES, SOURCES, SampleFormatError, decode_sample
from vla_dipole.data.shard_io import read_manifest, sha256_file

BINS = np.linspace(0.0, 1.0, 11)


@dataclass
class ValidationReport:
    shards: int = 0
    scenes: int = 0
    candidates: int = 0
    problems: list[str] = field(default_factory=list)
    per_source: dict[str, list[np.ndarray]] = field(default_factory=dict)
    human: list[float] = field(default_factory=list)
    logs: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def histogram(self, source: str) -> np.ndarray:
        values = np.concatenate(self.per_source[source]) if self.per_source.get(source) else np.zeros(0)
        return np.histogram(values, bins=BINS)[0]

    def summary(self, reward: str) -> str:
        lines = [
            f"{self.shards} shards, {self.scenes} scenes from {len(self.logs)} logs, {self.candidates} candidates",
            f"{reward} histogram (bins of 0.1 from 0 to 1) and mean per source:",
        ]
        for name in [*sorted(self.per_source), "human"]:
            values = np.asarray(self.human) if name == "human" else np.concatenate(self.per_source[name])
            hist = np.histogram(values, bins=BINS)[0]
            lines.append(
                f"  {name:>8} n={len(values):7d} mean={values.mean() if len(values) else float('nan'):.3f} "
                f"| " + " ".join(f"{h:6d}" for h in hist)
            )
        lines.append(
            "OK" if self.ok else f"{len(self.problems)} PROBLEMS:\n  " + "\n  ".join(self.problems[:50])
        )
        return "\n".join(lines)


def _iter_raw(path: Path):
    """The shard's samples exactly as the loader groups them (errors propagate)."""
    import webdataset as wds

    return iter(wds.DataPipeline(wds.SimpleShardList([str(path)]), wds.tarfile_to_samples()))


def validate(
    out: str | Path, reward: str = "pdms", check_images: bool = True, progress: bool = True
) -> ValidationReport:
    """Validate a build directory; problems are collected, not raised."""
    out = Path(out)
    manifest = read_manifest(out)
    if reward not in SCORE_NAMES:
        raise ValueError(f"--reward {reward!r}: expected one of {SCORE_NAMES}")
    col = SCORE_NAMES.index(reward)
    report = ValidationReport()
    k_expected = manifest["num_candidates"]
    image = manifest.get("image") or {}
    bar = tqdm(total=manifest["num_samples"], desc="validate", unit="sample", disable=not progress)
    seen: set[str] = set()
    for entry in manifest["shards"]:
        path = out / entry["name"]
        report.shards += 1
        if not path.is_file():
            report.problems.append(f"{path}: listed in manifest.json but missing")
            continue
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            report.problems.append(
                f"{path}: sha256 {digest[:12]}.. differs from manifest {entry['sha256'][:12]}.."
            )
        count = 0
        try:
            for raw in _iter_raw(path):
                count += 1
                try:
                    sample = decode_sample(raw, decode_images=check_images)
                except SampleFormatError as exc:
                    report.problems.append(str(exc))
                    continue
                _check_sample(sample, raw, k_expected, image, report, seen)
                report.scenes += 1
                report.candidates += len(sample["candidates"])
                report.logs[sample["log_name"]] += 1
                for code in np.unique(sample["sources"]):
                    scores = sample["candidate_scores"][sample["sources"] == code, col]
                    report.per_source.setdefault(SOURCES[code], []).append(scores)
                report.human.append(float(sample["human_scores"][col]))
                bar.update(1)
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            report.problems.append(
                f"{path}: unreadable tar after {count} samples: {exc.args[0] if exc.args else exc}"
            )
        if count != entry["samples"]:
            report.problems.append(f"{path}: {count} samples, manifest says {entry['samples']}")
    bar.close()
    if report.scenes != manifest["num_samples"] and not report.problems:
        report.problems.append(f"manifest num_samples {manifest['num_samples']} != {report.scenes} decoded")
    return report


def _check_sample(sample, raw, k_expected, image, report, seen) -> None:
    where = f"{raw['__url__']} sample {raw['__key__']}"
    if raw["__key__"] in seen:
        report.problems.append(f"{where}: duplicate scene token")
    seen.add(raw["__key__"])
    if len(sample["candidates"]) != k_expected:
        report.problems.append(
            f"{where}: {len(sample['candidates'])} candidates, manifest num_candidates {k_expected}"
        )
    scores = np.concatenate([sample["candidate_scores"].ravel(), sample["human_scores"].ravel()])
    if (scores < 0).any() or (scores > 1).any():
        report.problems.append(f"{where}: scores outside [0, 1]")
    meta = sample["meta"]
    if image:
        if list(meta["image_size"]) != list(image.get("size", meta["image_size"])):
            report.problems.append(
                f"{where}: meta image_size {meta['image_size']} != manifest image.size {image['size']}"
            )
        if list(meta["cameras"]) != list(image.get("cameras", meta["cameras"])):
            report.problems.append(
                f"{where}: meta cameras {meta['cameras']} != manifest image.cameras {image['cameras']}"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="shard directory holding manifest.json")
    parser.add_argument("--reward", default="pdms", choices=SCORE_NAMES, help="score to histogram")
    parser.add_argument("--no-images", action="store_true", help="skip JPEG decoding (faster)")
    args = parser.parse_args(argv)
    report = validate(args.out, args.reward, check_images=not args.no_images)
    print(report.summary(args.reward))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
