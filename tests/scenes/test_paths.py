"""Environment-variable resolution of NAVSIM's data roots."""

import pytest

from navsim_adapter.paths import (
    DataPathError,
    navsim_exp_root,
    navsim_log_dir,
    nuplan_maps_root,
    openscene_data_root,
    sensor_blobs_dir,
)


def test_argument_wins_over_environment(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("OPENSCENE_DATA_ROOT", str(other))
    assert openscene_data_root(tmp_path) == tmp_path
    assert openscene_data_root() == other
    assert navsim_log_dir(tmp_path, "test") == tmp_path / "navsim_logs" / "test"
    assert sensor_blobs_dir(tmp_path, "test") == tmp_path / "sensor_blobs" / "test"


@pytest.mark.parametrize(
    "resolver, var",
    [
        (openscene_data_root, "OPENSCENE_DATA_ROOT"),
        (nuplan_maps_root, "NUPLAN_MAPS_ROOT"),
        (navsim_exp_root, "NAVSIM_EXP_ROOT"),
    ],
)
def test_unset_variable_is_named(resolver, var, monkeypatch, tmp_path):
    monkeypatch.delenv(var, raising=False)
    with pytest.raises(DataPathError, match=f"environment variable {var} is not set"):
        resolver()
    monkeypatch.setenv(var, str(tmp_path))
    assert resolver() == tmp_path


def test_missing_directory_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("NUPLAN_MAPS_ROOT", str(tmp_path / "nope"))
    with pytest.raises(DataPathError, match=r"nope \(from \$NUPLAN_MAPS_ROOT\) is not a directory"):
        nuplan_maps_root()
    assert navsim_exp_root(tmp_path / "new") == tmp_path / "new"  # experiment roots are created later
