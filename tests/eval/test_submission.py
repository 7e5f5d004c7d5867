"""Leaderboard pickles: created from the tiny checkpoint, reloaded and checked by the validator."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from navsim_adapter.evaluation import submission as sub
from navsim_adapter.scene_loader import SceneFilter, SceneLoader

META = {"team_name": "T", "authors": "A B", "email": "a@b.c", "institution": "I", "country / region": "C"}


def write(path, obj):
    with path.open("wb") as f:
        pickle.dump(obj, f)
    return path


@pytest.fixture(scope="module")
def v1_pickle(tiny_bc_policy, synthetic_root, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("submission") / "submission.pkl"
        return sub.create_submission(
            tiny_bc_policy, synthetic_root, "test", META, omega=1.0, steps=2, out=out
        )
    finally:
        torch.set_num_threads(threads)


def test_v1_pickle_round_trips_through_the_validator(v1_pickle, synthetic_root):
    tokens = SceneLoader("test", data_root=synthetic_root, scene_filter=SceneFilter(frame_interval=1)).tokens
    assert sub.validate_submission(v1_pickle, sub.expected_tokens(synthetic_root, "test")) == {
        "predictions": len(tokens)
    }
    with v1_pickle.open("rb") as f:
        data = pickle.load(f)
    assert {k: data[k] for k in sub.META_KEYS} == META
    preds = data["predictions"][0]
    assert sorted(preds) == sorted(tokens)
    try:
        from navsim.common.dataclasses import Trajectory
    except ImportError:
        Trajectory = sub.LocalTrajectory
    traj = preds[tokens[0]]
    assert isinstance(traj, Trajectory) and traj.poses.shape == (8, 3) and traj.poses.dtype == np.float32


def test_validator_names_each_fault(v1_pickle, tmp_path):
    with v1_pickle.open("rb") as f:
        good = pickle.load(f)
    token = next(iter(good["predictions"][0]))

    def broken(edit):
        data = pickle.loads(pickle.dumps(good))
        edit(data)
        return write(tmp_path / "bad.pkl", data)

    with pytest.raises(ValueError, match="missing metadata.*email"):
        sub.validate_submission(broken(lambda d: d.pop("email")))
    with pytest.raises(ValueError, match=rf"{token}.*shape \(7, 3\)"):
        sub.validate_submission(
            broken(lambda d: setattr(d["predictions"][0][token], "poses", np.zeros((7, 3))))
        )
    nan = np.zeros((8, 3), np.float32)
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=rf"{token}.*non-finite"):
        sub.validate_submission(broken(lambda d: setattr(d["predictions"][0][token], "poses", nan)))
    with pytest.raises(ValueError, match="1 expected tokens missing.*not_a_token"):
        sub.validate_submission(v1_pickle, {"predictions": [token, "not_a_token"]})
    with pytest.raises(ValueError, match="second_stage_predictions"):
        sub.validate_submission(broken(lambda d: d.update(first_stage_predictions=d.pop("predictions"))))


def test_v2_two_stage_format(tiny_bc_policy, synthetic_root, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = sub.create_submission(
            tiny_bc_policy,
            synthetic_root,
            "test",
            META,
            steps=1,
            out=tmp_path / "v2.pkl",
            second_stage_split="test",
        )
    finally:
        torch.set_num_threads(threads)
    expected = sub.expected_tokens(synthetic_root, "test", second_stage_split="test")
    counts = sub.validate_submission(path, expected)
    n = len(expected["first_stage_predictions"])
    assert counts == {"first_stage_predictions": n, "second_stage_predictions": n}
    with path.open("rb") as f:
        assert "predictions" not in pickle.load(f)


def test_cli_refuses_privileged_selection_and_missing_metadata(tiny_bc_policy, synthetic_root, tmp_path):
    base = [
        "--checkpoint",
        str(tiny_bc_policy),
        "--data-root",
        str(synthetic_root),
        "--split",
        "test",
        "--out",
        str(tmp_path / "s.pkl"),
    ]
    with pytest.raises(SystemExit, match="privileged"):
        sub.main([*base, "--selection", "oracle", "--team-name", "T"])
    with pytest.raises(SystemExit, match="metadata missing.*authors"):
        sub.main([*base, "--team-name", "T", "--email", "e", "--institution", "I", "--country", "C"])
    assert not (tmp_path / "s.pkl").exists()


def test_cli_validate_reports_invalid_file(tmp_path, synthetic_root):
    bad = write(tmp_path / "x.pkl", {**META, "predictions": [{"tok": sub.LocalTrajectory(np.zeros((8, 2)))}]})
    with pytest.raises(SystemExit, match="INVALID.*shape"):
        sub.main(["--validate", str(bad)])
