"""What determines a shard build's bytes (`BuildSettings`, compared on resume) and how its options are
read: candidate sources and counts, image sizes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vla_dipole.data.observation import ObservationSpec
from vla_dipole.data.shard_format import JPEG_QUALITY, SCHEMA_VERSION, SOURCES, source_codes

BUILD_DIR = ".build"
MAX_HISTORY = 4  # NAVSIM scenes have 4 history frames
MISSING_CACHE_MODES = ("error", "skip")  # a scene without a metric-cache entry: fail, or leave it out


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines shard bytes (compared on resume); `workers` is deliberately absent."""

    data_root: str
    split: str
    cameras: tuple[str, ...]
    image_size: tuple[int, int]  # (W, H)
    history_frames: int
    sources: tuple[tuple[str, int], ...]  # (source, count) in candidate order
    shard_size: int
    limit: int | None
    seed: int
    frame_interval: int = 1
    jpeg_quality: int = JPEG_QUALITY
    vocab_mode: str = "mixed"
    vocabulary_sha256: str | None = None
    policy: Mapping[str, Any] | None = None
    metric_cache: str | None = None  # NAVSIM metric cache the contexts come from (None: scene + JSON map)
    missing_cache: str = "error"
    scorer_version: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = dict(self.sources)
        d["policy"] = dict(self.policy) if self.policy else None
        return json.loads(json.dumps(d))

    @classmethod
    def from_json(cls, config: Mapping[str, Any], where: str) -> BuildSettings:
        """The settings a build recorded (its manifest's `config`); fields added since take their defaults.

        Online rounds rebuild the offline build's scenes and observations from them.
        """
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [k for k in required if k not in config]
        if missing:
            raise ValueError(f"{where}: field 'config' lacks {missing} (expected every BuildSettings field)")
        known = {f.name for f in fields(cls)} - {"schema_version"}
        d = {k: v for k, v in config.items() if k in known}
        d.update(
            cameras=tuple(d["cameras"]),
            image_size=tuple(int(v) for v in d["image_size"]),
            sources=tuple((k, int(n)) for k, n in dict(d["sources"]).items()),
        )
        return cls(**d)

    @property
    def observation(self) -> ObservationSpec:
        """What each sample stores of its scene (the evaluator rebuilds the same from a checkpoint)."""
        return ObservationSpec(self.cameras, self.image_size, self.history_frames, self.jpeg_quality)


def parse_sources(
    sources: str | Sequence[str] | Mapping[str, int], num_candidates: int | str | Mapping[str, int]
):
    """-> ((source, count), ...). `sources` "vocab,perturb" or a list; counts one int for all, "vocab:8,perturb:4"
    or a mapping; a count given inside `sources` ("vocab:8") wins."""
    if isinstance(sources, Mapping):
        items = [(k, int(v)) for k, v in sources.items()]
    else:
        parts = sources.split(",") if isinstance(sources, str) else list(sources)
        per = num_candidates if isinstance(num_candidates, Mapping) else None
        if isinstance(num_candidates, str) and ":" in num_candidates:
            per = {k: int(v) for k, v in (p.split(":") for p in num_candidates.split(","))}
        items = []
        for part in (p.strip() for p in parts if p.strip()):
            name, _, count = part.partition(":")
            n = int(count) if count else (per[name] if per and name in per else None)
            if n is None:
                if per is not None:
                    raise ValueError(
                        f"--num-candidates {num_candidates!r} gives no count for source {name!r}"
                    )
                n = int(num_candidates)
            items.append((name, n))
    source_codes([k for k, _ in items])  # validates the names
    if not items or len({k for k, _ in items}) != len(items) or any(n < 1 for _, n in items):
        raise ValueError(f"sources must be distinct names from {SOURCES} with counts >= 1, got {items}")
    return tuple(items)


def parse_image_size(size: int | str | Sequence[int]) -> tuple[int, int]:
    """224 | "224" | "256x144" (W x H) | (W, H) -> (W, H)."""
    if isinstance(size, str):
        parts = size.lower().split("x")
        size = (int(parts[0]), int(parts[-1]))
    elif isinstance(size, int):
        size = (size, size)
    w, h = (int(v) for v in size)
    if w < 8 or h < 8:
        raise ValueError(f"image_size must be at least 8x8 pixels, got {w}x{h}")
    return w, h


def check_settings(out: Path, settings: BuildSettings) -> None:
    """Refuse to resume into a directory built with other settings (its shards would not match)."""
    path = out / BUILD_DIR / "settings.json"
    current = settings.to_json()
    if path.is_file():
        # a field added since that build compares as its default (an older build had no other value)
        defaults = {f.name: f.default for f in fields(BuildSettings) if f.default is not MISSING}
        previous = {**json.loads(json.dumps(defaults)), **json.loads(path.read_text())}
        diff = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if diff:
            raise ValueError(
                f"{out} holds shards built with other settings (differences: {diff}); "
                "use a new --out or pass --overwrite"
            )
    else:
        path.write_text(json.dumps(current, indent=2, sort_keys=True))
