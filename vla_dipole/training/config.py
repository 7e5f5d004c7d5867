"""Training config: configs/train/base.yaml is the schema, presets and `key=value` overrides go on top.

Why not free-form OmegaConf merging: a typo such as `optim.learning_rate=1e-3` would silently create a
new key and train with the default. Every key and every value type is checked against base.yaml, and
every error names the file (or command-line override), the field and what was expected.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from vla_dipole.training.stages import STAGES

ADVANTAGES = ("pdms", "epdms", "baseline")
ON_DAMAGED = ("refuse", "skip")


class ConfigError(ValueError):
    """A config mistake, with the source (file or override), the field and what was expected."""


def config_root() -> Path:
    """The `configs/` directory (override with $VLA_DIPOLE_CONFIGS)."""
    env = os.environ.get("VLA_DIPOLE_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs"


def _load_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{what}: file {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _suggest(key: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_ok(value: Any, reference: Any) -> bool:
    """Whether `value` may replace `reference` (None in the schema accepts anything)."""
    if reference is None or value is None:
        return True
    if isinstance(reference, bool):
        return isinstance(value, bool)
    if isinstance(reference, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(reference, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(reference, str):
        return isinstance(value, str)
    if isinstance(reference, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(reference, dict):
        return isinstance(value, dict)
    return True


def _coerce(value: Any, reference: Any) -> Any:
    """YAML 1.1 reads `3e-4` as a string; accept it where the schema has a float."""
    if isinstance(reference, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_against(data: dict, schema: dict, source: str, prefix: str = "") -> None:
    """Recursively check that every key of `data` exists in `schema` with a compatible type."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(
                f"{source}: unknown key '{full}'{_suggest(key, schema)}; valid keys: {sorted(schema)}"
            )
        ref = schema[key]
        if not prefix and key == "model":  # a preset name, a yaml path or a mapping: see resolve_model
            continue
        if isinstance(ref, dict) and isinstance(value, dict):
            _check_against(value, ref, source, prefix=f"{full}.")
        elif not _type_ok(value, ref):
            raise ConfigError(
                f"{source}: field '{full}' expected {type(ref).__name__} (like {ref!r}), got {value!r}"
            )


def _set_dotted(data: dict, dotted: str, value: Any, schema: dict, source: str) -> None:
    parts = dotted.split(".")
    node, ref = data, schema
    for i, part in enumerate(parts):
        full = ".".join(parts[: i + 1])
        if not isinstance(ref, dict) or part not in ref:
            options = ref if isinstance(ref, dict) else {}
            raise ConfigError(
                f"{source}: unknown key '{full}'{_suggest(part, options)}; valid keys: {sorted(options)}"
            )
        if i == len(parts) - 1:
            if isinstance(ref[part], dict) and not isinstance(value, dict):
                raise ConfigError(
                    f"{source}: '{full}' is a section; set one of its fields: {sorted(ref[part])}"
                )
            value = _coerce(value, ref[part])
            _check_against({part: value}, ref, source, prefix=".".join(parts[:i]) + "." if i else "")
            node[part] = value
        else:
            node = node.setdefault(part, {})
            ref = ref[part]


def _merge(dst: dict, src: dict) -> dict:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value
    return dst


def resolve_model(spec: Any, root: Path, source: str) -> dict:
    """`model: tiny` -> contents of configs/model/tiny.yaml; a path to a yaml or a mapping also work."""
    if isinstance(spec, dict):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(
            f"{source}: field 'model' expected a preset name, a yaml path or a mapping, got {spec!r}"
        )
    path = Path(spec) if spec.endswith((".yaml", ".yml")) else root / "model" / f"{spec}.yaml"
    if not path.is_file():
        presets = sorted(p.stem for p in (root / "model").glob("*.yaml"))
        raise ConfigError(
            f"{source}: field 'model': preset file {path} not found; available presets: {presets}"
        )
    return _load_yaml(path, f"{source}: model")


def _check_model(model: dict) -> None:
    """Validate the model section with the model's own schema, when the model package is available."""
    try:
        from vla_dipole.model.config import PolicyConfig
    except ImportError:  # the model package is optional for config-only tooling
        return
    try:
        PolicyConfig.from_dict(model, source="config field 'model'")
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def load_config(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Build the run config from base.yaml, `config=<preset>`, `model=<preset>` and dotted overrides."""
    root = Path(root) if root else config_root()
    base_path = root / "train" / "base.yaml"
    schema = _load_yaml(base_path, "training config schema")
    data = yaml.safe_load(yaml.safe_dump(schema))  # deep copy

    parsed: list[tuple[str, Any, str]] = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"command-line override '{item}': expected key=value (e.g. stage=dipole)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        parsed.append((key.strip(), value, f"command-line override '{item}'"))

    # 1. config presets (configs/train/<name>.yaml), in the given order
    for key, value, source in parsed:
        if key == "config":
            path = Path(value) if str(value).endswith((".yaml", ".yml")) else root / "train" / f"{value}.yaml"
            preset = _load_yaml(path, source)
            _check_against(preset, schema, str(path))
            _merge(data, preset)
    # 2. plain overrides outside `model.`
    for key, value, source in parsed:
        if key == "config" or key == "model" or key.startswith("model."):
            continue
        _set_dotted(data, key, value, schema, source)
    # 3. the model: preset, then its dotted overrides checked against the preset's keys
    for key, value, _ in parsed:
        if key == "model":
            data["model"] = value
    model = resolve_model(data["model"], root, "model")
    for key, value, source in parsed:
        if key.startswith("model."):  # checked below by the model's own schema (PolicyConfig)
            node = model
            *parents, leaf = key.split(".")[1:]
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{source}: '{part}' in '{key}' is not a section of the model config")
            node[leaf] = value
    data["model"] = model
    _check_model(model)

    cfg = OmegaConf.create(data)
    validate(cfg)
    OmegaConf.set_readonly(cfg, False)
    return cfg


def _require(cond: bool, field: str, expected: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"config field '{field}': expected {expected}, got {value!r}")


_POSITIVE = (lambda v: int(v) > 0, "a positive integer")
# (field, predicate, what was expected): checks that do not depend on the world size
_CHECKS: tuple[tuple[str, Any, str], ...] = (
    ("stage", lambda v: v in STAGES, f"one of {tuple(STAGES)}"),
    ("dipole.advantage", lambda v: v in ADVANTAGES, f"one of {ADVANTAGES}"),
    ("data.on_damaged", lambda v: v in ON_DAMAGED, f"one of {ON_DAMAGED}"),
    ("dipole.adv_std_floor", lambda v: float(v) >= 0, ">= 0"),
    ("schedule.total_samples", *_POSITIVE),
    ("schedule.global_batch", *_POSITIVE),
    ("schedule.micro_batch", *_POSITIVE),
    ("schedule.warmup_samples", lambda v: int(v) >= 0, "an integer >= 0"),
    ("optim.lr", lambda v: float(v) > 0, "> 0"),
    ("optim.min_lr_ratio", lambda v: 0.0 <= float(v) <= 1.0, "in [0, 1]"),
    ("optim.grad_clip", lambda v: float(v) >= 0, ">= 0 (0 disables)"),
    ("ema.decay", lambda v: 0.0 <= float(v) < 1.0, "in [0, 1)"),
    ("checkpoint.every_samples", *_POSITIVE),
    ("checkpoint.keep_last", *_POSITIVE),
    ("dipole.rounds", lambda v: int(v) >= 0, "an integer >= 0"),
    ("dipole.samples_per_scene", lambda v: int(v) >= 2, "an integer >= 2"),
    ("dipole.omega", lambda v: float(v) >= 0, ">= 0"),
    ("dipole.num_steps", *_POSITIVE),
    ("dipole.round_frame_interval", *_POSITIVE),
    ("awr.clip", lambda v: float(v) > 0, "> 0"),
    ("logging.every_steps", *_POSITIVE),
)


def validate(cfg: DictConfig) -> None:
    """Semantic checks that do not depend on the world size (batch divisibility is in schedule)."""
    for field, ok, expected in _CHECKS:
        _require(ok(OmegaConf.select(cfg, field)), field, expected, OmegaConf.select(cfg, field))
    s = cfg.schedule
    _require(
        s.global_batch % s.micro_batch == 0,
        "schedule.global_batch",
        f"a multiple of schedule.micro_batch={s.micro_batch}",
        s.global_batch,
    )
    _require(cfg.bc.aux_weight >= 0, "bc.aux_weight", ">= 0 (0: no trajectory probe)", cfg.bc.aux_weight)
    if cfg.bc.aux_weight > 0:  # the probe regresses the logged trajectory: a BC objective
        _require(cfg.stage == "bc", "stage", "bc when bc.aux_weight > 0", cfg.stage)
    if cfg.dipole.rounds > 0:  # online rounds resample the candidates of a candidate-weighted stage
        resampled = [name for name, stage in STAGES.items() if stage.candidates]
        _require(
            STAGES[cfg.stage].candidates, "stage", f"one of {resampled} when dipole.rounds > 0", cfg.stage
        )


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the fully resolved config next to the run (what was actually trained)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, path)
