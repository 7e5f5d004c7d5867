"""`make check-real-path`: the README's real-data commands, read from README.md, on synthetic data.

The fast tests pin the link between README and check (a README edit either runs as written or fails
the plan); the slow one runs the whole path: vocabulary -> shards -> validate -> BC -> DIPOLE with an
online round on 2 DeepSpeed processes -> evaluate -> submission -> DipoleAgent on navsim's AgentInput.
"""

from __future__ import annotations

import importlib.util
import pickle

import pytest

from vla_dipole.demo import real_path as crp


def _readme(tmp_path, old: str, new: str):
    text = crp.REPO.joinpath("README.md").read_text()
    assert old in text
    path = tmp_path / "README.md"
    path.write_text(text.replace(old, new))
    return path


def test_plan_is_the_readmes_commands(tmp_path):
    exports, commands = crp.readme_commands(crp.REPO / "README.md")
    planned = crp.plan(crp.REPO / "README.md", tmp_path)
    assert set(exports) == set(crp.ENV_VARS) and len(planned) == len(commands) == len(crp.STAGES)
    # what is not rewritten runs verbatim: every README flag of evaluate / submission is in the plan
    for readme_cmd, run_cmd in zip(commands[-2:], planned[-2:], strict=True):
        assert readme_cmd.split("python ", 1)[1] in run_cmd
    assert "--model" in planned[3] and "openvla-7b-tiny.yaml" in planned[3]


def test_a_changed_readme_command_changes_or_fails_the_check(tmp_path):
    edited = _readme(tmp_path, "--omega 0,0.5,1,2,4", "--omega 0,3")
    assert any("--omega 0,3 " in c for c in crp.plan(edited, tmp_path))
    with pytest.raises(ValueError, match="vocabulary the size of a few scenes"):
        crp.plan(_readme(tmp_path, "--size 1024", "--size 512"), tmp_path)
    with pytest.raises(ValueError, match="data_prep.validate"):
        crp.plan(_readme(tmp_path, "python -m data_prep.validate shards/\n", ""), tmp_path)
    with pytest.raises(ValueError, match="one online round"):
        crp.plan(_readme(tmp_path, " dipole.rounds=2", ""), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~5 min on 2 idle cores (8 CLI stages, 2 DeepSpeed launches); more on a busy box
@pytest.mark.skipif(importlib.util.find_spec("navsim") is None, reason="official navsim not installed")
def test_real_path_runs_end_to_end(tmp_path):
    out = crp.main(["--out", str(tmp_path / "real_path")])
    for stage in ("bc", "dipole"):
        assert (out / "runs" / stage / "policy" / "heads.safetensors").is_file()
    policy_config = (out / "runs" / "dipole" / "policy" / "policy_config.yaml").read_text()
    assert "ego_history: 4" in policy_config and "- 224" in policy_config  # the preset's observation
    assert (out / "runs" / "dipole" / "round-01" / "shards" / "manifest.json").is_file()  # the online round
    assert "dipole@omega=4" in (out / "eval" / "summary.md").read_text()
    with (out / "submission.pkl").open("rb") as f:
        assert len(pickle.load(f)["predictions"][0]) == 7
