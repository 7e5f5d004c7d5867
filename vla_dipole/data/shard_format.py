"""One place for the shard sample schema and manifest: the writer, validator and loader all use it.

The schema is documented in docs/shards.md; change both together and bump SCHEMA_VERSION.
Encoding is deterministic (np.save, sorted JSON, fixed JPEG settings) so shards built twice from
the same inputs are byte-identical.
"""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from navsim_adapter.pdm.columns import SCORE_NAMES  # the score columns, defined with the PDM engine

SCHEMA_VERSION = 1
SOURCES = ("vocab", "perturb", "policy")
NUM_POSES = 8
JPEG_QUALITY = 90

ARRAYS_MEMBER = "arrays.npy"
# Fields of the one structured record in `arrays.npy`: name -> (dtype, shape), where "H" (history
# frames) and "K" (candidates) are per-build sizes. One member instead of one per array: tar
# parsing costs per member and dominated loader time.
ARRAY_FIELDS: dict[str, tuple[str, tuple[int | str, ...]]] = {
    "ego_pose": ("float32", ("H", 3)),
    "ego_velocity": ("float32", ("H", 2)),
    "ego_acceleration": ("float32", ("H", 2)),
    "driving_command": ("uint8", ("H", 4)),
    "human": ("float32", (NUM_POSES, 3)),
    "candidates": ("float32", ("K", NUM_POSES, 3)),
    "sources": ("uint8", ("K",)),
    "candidate_scores": ("float32", ("K", len(SCORE_NAMES))),
    "human_scores": ("float32", (len(SCORE_NAMES),)),
}
META_KEYS = (
    "token",
    "log_name",
    "map_name",
    "split",
    "timestamp_us",
    "cameras",
    "history_frames",
    "image_size",
)


class SampleFormatError(ValueError):
    """A sample that does not follow the schema; the message names the shard, sample and member."""


def image_member(camera: str, index: int) -> str:
    """Tar member suffix of camera `camera` at stored history index `index` (0 = oldest stored)."""
    return f"{camera}_h{index}.jpg"


@dataclass
class Sample:
    """One scene's training record, in memory (numpy arrays + JPEG bytes)."""

    token: str
    log_name: str
    map_name: str
    split: str
    timestamp_us: int
    cameras: list[str]
    image_size: tuple[int, int]  # (W, H)
    images: list[bytes]  # history-major: for each stored history frame, for each camera
    ego_pose: np.ndarray
    ego_velocity: np.ndarray
    ego_acceleration: np.ndarray
    driving_command: np.ndarray
    human: np.ndarray
    candidates: np.ndarray
    sources: np.ndarray
    candidate_scores: np.ndarray
    human_scores: np.ndarray
    extra_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def history_frames(self) -> int:
        return int(self.ego_pose.shape[0])


def encode_jpeg(image: np.ndarray, size: tuple[int, int], quality: int = JPEG_QUALITY) -> bytes:
    """Resize (W, H) without cropping and JPEG-encode an RGB uint8 image, deterministically."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    if img.size != tuple(size):
        img = img.resize(tuple(size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False, subsampling=0)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 (H, W, 3)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


@lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """Parse a .npy header dict; any damage is a ValueError (literal_eval raises SyntaxError & co.)."""
    try:
        d = ast.literal_eval(header.decode("latin1"))
        dtype, shape = np.dtype(d["descr"]), tuple(int(v) for v in d["shape"])
        fortran = bool(d["fortran_order"])
    except (SyntaxError, ValueError, TypeError, KeyError, MemoryError, RecursionError) as exc:
        raise ValueError(f"garbled .npy header {header[:60]!r}: {type(exc).__name__}: {exc}") from None
    if any(v < 0 for v in shape):
        raise ValueError(f"garbled .npy header: negative shape {shape}")
    return dtype, shape, fortran


def load_npy(data: bytes) -> np.ndarray:
    """np.load for .npy bytes, with the header parse cached (the same few headers repeat in every
    sample, and parsing them dominated decoding time)."""
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy payload (bad magic)")
    if data[6] == 1:
        start, size = 10, int.from_bytes(data[8:10], "little")
    else:
        start, size = 12, int.from_bytes(data[8:12], "little")
    dtype, shape, fortran = _npy_header(bytes(data[start : start + size]))
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed in shards")
    count = int(np.prod(shape)) if shape else 1
    if len(data) - (start + size) != count * dtype.itemsize:
        raise ValueError(
            f"truncated or padded .npy payload: {len(data) - start - size} data bytes, "
            f"header says {count} x {dtype.itemsize}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=start + size)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The ARRAY_FIELDS of a sample as one 0-d structured record in .npy bytes (np.load reads it)."""
    fields = []
    for name, (dtype, _) in ARRAY_FIELDS.items():
        fields.append((name, dtype, np.shape(arrays[name])))
    record = np.zeros((), dtype=np.dtype(fields))
    for name, (dtype, _) in ARRAY_FIELDS.items():
        record[name] = np.asarray(arrays[name], dtype=dtype)
    buf = io.BytesIO()
    np.save(buf, record, allow_pickle=False)
    return buf.getvalue()


def decode_arrays(data: bytes) -> dict[str, np.ndarray]:
    record = load_npy(data)
    if record.dtype.names is None:
        raise ValueError(f"{ARRAYS_MEMBER} is a plain {record.dtype} array, expected a structured record")
    return {name: np.array(record[name]) for name in record.dtype.names}


def encode_sample(sample: Sample) -> dict[str, bytes | str]:
    """Sample -> webdataset dict {"__key__": token, member: bytes}."""
    if "." in sample.token or "/" in sample.token:
        raise SampleFormatError(f"scene token {sample.token!r} may not contain '.' or '/' (webdataset keys)")
    meta = {
        "token": sample.token,
        "log_name": sample.log_name,
        "map_name": sample.map_name,
        "split": sample.split,
        "timestamp_us": int(sample.timestamp_us),
        "cameras": list(sample.cameras),
        "history_frames": sample.history_frames,
        "image_size": [int(v) for v in sample.image_size],
        "schema_version": SCHEMA_VERSION,
        **sample.extra_meta,
    }
    out: dict[str, bytes | str] = {
        "__key__": sample.token,
        "meta.json": json.dumps(meta, sort_keys=True).encode(),
    }
    expected_images = sample.history_frames * len(sample.cameras)
    if len(sample.images) != expected_images:
        raise SampleFormatError(
            f"sample {sample.token}: {len(sample.images)} images, expected history_frames x cameras = {expected_images}"
        )
    for i in range(sample.history_frames):
        for c, cam in enumerate(sample.cameras):
            out[image_member(cam, i)] = sample.images[i * len(sample.cameras) + c]
    arrays = {name: getattr(sample, name) for name in ARRAY_FIELDS}
    check_arrays(
        {k: np.asarray(v, dtype=ARRAY_FIELDS[k][0]) for k, v in arrays.items()},
        where=f"sample {sample.token}",
    )
    out[ARRAYS_MEMBER] = encode_arrays(arrays)
    return out


def check_arrays(arrays: Mapping[str, np.ndarray], where: str) -> tuple[int, int]:
    """Check dtypes, shapes (consistent H and K) and finiteness; returns (H, K)."""
    sizes: dict[str, int] = {}
    for member, (dtype, shape) in ARRAY_FIELDS.items():
        if member not in arrays:
            raise SampleFormatError(f"{where}: {ARRAYS_MEMBER} lacks field {member!r}")
        arr = arrays[member]
        if arr.dtype != np.dtype(dtype) or arr.ndim != len(shape):
            raise SampleFormatError(
                f"{where}: {member} is {arr.dtype}{arr.shape}, expected {dtype} with shape {shape}"
            )
        for got, want in zip(arr.shape, shape, strict=True):
            if isinstance(want, str):
                if sizes.setdefault(want, got) != got:
                    raise SampleFormatError(
                        f"{where}: {member} has {want}={got}, other members have {sizes[want]}"
                    )
            elif got != want:
                raise SampleFormatError(f"{where}: {member} has shape {arr.shape}, expected {shape}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise SampleFormatError(f"{where}: {member} contains non-finite values")
    if sizes["H"] < 1:
        raise SampleFormatError(f"{where}: no history frames")
    if (arrays["sources"] >= len(SOURCES)).any():
        raise SampleFormatError(
            f"{where}: sources has codes >= {len(SOURCES)} (expected indices into {SOURCES})"
        )
    return sizes["H"], sizes["K"]


def decode_sample(
    raw: Mapping[str, Any], decode_images: bool = True, image_frames: int | None = None
) -> dict[str, Any]:
    """webdataset dict of bytes -> dict of numpy arrays (+ `images` uint8 (N, h, w, 3) or raw JPEG list).

    `image_frames`: keep only the images of the last N history frames (every camera), the ones a model
    reads; a shard stores as many frames as the longest ego history needs, and JPEG decoding of the
    unread ones was a fifth of a demo training step. `data_prep.validate` still decodes every image.
    Raises SampleFormatError naming the shard (`__url__`), the sample key and the member at fault.
    """
    where = f"shard {raw.get('__url__', '?')} sample {raw.get('__key__', '?')}"
    for member in ("meta.json", ARRAYS_MEMBER):
        if member not in raw:
            raise SampleFormatError(f"{where}: missing member {member!r}")
    member = "meta.json"
    try:
        meta = json.loads(raw[member])
        member = ARRAYS_MEMBER
        arrays = decode_arrays(raw[member])
    except (ValueError, OSError, TypeError, KeyError) as exc:
        raise SampleFormatError(f"{where}: undecodable member {member}: {exc}") from exc
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise SampleFormatError(f"{where}: meta.json lacks keys {missing}")
    h, _ = check_arrays(arrays, where)
    if meta["history_frames"] != h:
        raise SampleFormatError(
            f"{where}: meta.json history_frames={meta['history_frames']} but arrays have H={h}"
        )
    jpegs = []
    for i in range(h):
        for cam in meta["cameras"]:
            name = image_member(cam, i)
            if name not in raw:
                raise SampleFormatError(f"{where}: missing member {name!r}")
            jpegs.append(raw[name])
    if image_frames is not None:
        if not 1 <= image_frames <= h:
            raise ValueError(
                f"image_frames: expected 1 .. {h} (the stored history frames), got {image_frames}"
            )
        jpegs = jpegs[(h - image_frames) * len(meta["cameras"]) :]
    out: dict[str, Any] = dict(arrays)
    out["meta"] = meta
    out["token"] = meta["token"]
    out["log_name"] = meta["log_name"]
    out["__url__"] = raw.get("__url__")
    if decode_images:
        try:
            images = [decode_jpeg(j) for j in jpegs]
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what PIL raises on broken JPEGs
            raise SampleFormatError(f"{where}: undecodable JPEG: {exc}") from exc
        want = tuple(meta["image_size"][::-1])
        bad = [img.shape for img in images if img.shape[:2] != want]
        if bad:
            raise SampleFormatError(
                f"{where}: image shapes {bad} differ from meta image_size (W, H)={meta['image_size']}"
            )
        out["images"] = np.stack(images)
    else:
        out["images"] = jpegs
    return out


def source_codes(names: Sequence[str]) -> np.ndarray:
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown candidate sources {unknown}; expected some of {SOURCES}")
    return np.array([SOURCES.index(n) for n in names], dtype=np.uint8)
