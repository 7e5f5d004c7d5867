"""Config loading: overrides apply, mistakes fail with the file / field / expectation named."""

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from vla_dipole.training.config import ConfigError, config_root, load_config, save_config


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A config root with the real base.yaml and a minimal model preset (independent of configs/model)."""
    (tmp_path / "train").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "train" / "base.yaml").write_text((config_root() / "train" / "base.yaml").read_text())
    (tmp_path / "train" / "short.yaml").write_text("schedule:\n  total_samples: 64\noptim:\n  lr: 0.01\n")
    (tmp_path / "model" / "tiny.yaml").write_text("name: tiny\nhead:\n  width: 32\n  num_heads: 2\n")
    return tmp_path


def test_defaults_and_overrides(root: Path) -> None:
    cfg = load_config(["stage=dipole", "dipole.beta=2.5", "optim.lr=3e-4", "config=short"], root=root)
    assert cfg.stage == "dipole"
    assert cfg.dipole.beta == 2.5
    assert cfg.optim.lr == pytest.approx(3e-4)  # the command line wins over the preset
    assert cfg.schedule.total_samples == 64  # from configs/train/short.yaml
    assert cfg.model.head.width == 32  # the model preset is resolved into the config


def test_model_override(root: Path) -> None:
    cfg = load_config(["model.head.width=64"], root=root)
    assert cfg.model.head.width == 64 and cfg.model.head.num_heads == 2


def test_unknown_key_suggests(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'optim.weight_decy'.*did you mean 'weight_decay'"):
        load_config(["optim.weight_decy=1e-3"], root=root)


def test_unknown_key_in_preset_names_file(root: Path) -> None:
    (root / "train" / "bad.yaml").write_text("schedule:\n  total_sample: 10\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'schedule.total_sample'"):
        load_config(["config=bad"], root=root)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("stage=ppo", r"'stage'.*one of"),
        ("optim.lr=fast", r"'optim.lr' expected float"),
        ("schedule.micro_batch=5", r"'schedule.global_batch'.*multiple of schedule.micro_batch=5"),
        ("dipole.advantage=q", r"'dipole.advantage'"),
        ("model=nonexistent", r"preset file .*nonexistent.yaml not found"),
        ("stage", r"expected key=value"),
        ("optim=1", r"'optim' is a section"),
    ],
)
def test_config_mistakes(root: Path, override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config([override], root=root)


def test_save_roundtrip(root: Path, tmp_path: Path) -> None:
    cfg = load_config(["seed=7"], root=root)
    save_config(cfg, tmp_path / "run" / "config.yaml")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["seed"] == 7 and saved["model"]["head"]["width"] == 32


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_real_presets_load_and_apply_every_value() -> None:
    """The shipped configs/train/*.yaml presets are valid against base.yaml, and each of their values
    is what the loaded config holds."""
    presets = sorted(p for p in (config_root() / "train").glob("*.yaml") if p.stem != "base")
    assert {p.stem for p in presets} >= {"awr", "dipole", "online", "tiny"}
    for preset in presets:
        cfg = load_config([f"config={preset.stem}"])
        for key, value in _leaves(yaml.safe_load(preset.read_text())):
            got = cfg.model.name if key == "model" else OmegaConf.select(cfg, key)
            assert got == value, f"{preset.name}: {key} = {got!r}, the preset says {value!r}"
