"""The reduced-size bandit proof: the correct algorithm passes, deliberately broken variants fail."""

from __future__ import annotations

import json

import pytest
import torch

from vla_dipole.verify_algo import VerifyConfig, run_verification
from vla_dipole.verify_algo.__main__ import main
from vla_dipole.verify_algo.bandit import Bandit, TargetOracle
from vla_dipole.verify_algo.metrics import is_monotone, mmd
from vla_dipole.verify_algo.report import format_tables, plot_samples, write_json
from vla_dipole.verify_algo.run import train_policies


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets run fastest on one thread (and leave the other core to the rest of the suite)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(one_thread):
    return train_policies(VerifyConfig.quick(), progress=False)


@pytest.fixture(scope="module")
def result(trained):
    return run_verification(VerifyConfig.quick(), progress=False, trained=trained)


def test_quick_proof_passes(result, tmp_path):
    table = format_tables(result)
    assert result.passed, table
    rewards = [r["reward_model"] for r in result.rows]
    assert rewards == sorted(rewards)  # pi- < pi+ < greedier omegas
    assert all(r["nearest_target"] == r["policy"] for r in result.rows)
    e = result.explosion_check
    assert e["dipole_bounded"] and e["awr_exploded"]
    # the outputs a user reads
    assert "OVERALL: PASS" in table
    data = json.loads(write_json(result, tmp_path / "r.json").read_text())
    assert data["passed"] is True and len(data["rows"]) == len(result.rows)
    png = plot_samples(result, Bandit(), tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_swapped_omega_sign_fails(trained):
    res = run_verification(VerifyConfig.quick(variant="swapped_omega"), progress=False, trained=trained)
    assert not res.passed
    assert not res.monotone["passed"]
    assert not any(r["passed"] for r in res.rows if r["omega"] > 0)


@pytest.mark.slow
def test_same_weights_for_both_heads_fails(one_thread):
    """w- = w+ makes eps- a copy of eps+: the omega sweep stays at pi+ and pi- is wrong."""
    res = run_verification(VerifyConfig.quick(variant="same_weights"), progress=False)
    assert not res.passed
    by = {r["policy"]: r for r in res.rows}
    assert by["omega=0"]["passed"]  # pi+ itself is trained correctly ...
    assert not by["pi-"]["passed"] and not by["omega=1"]["passed"]  # ... the dichotomy is not


def test_target_oracle_matches_closed_form_limits():
    """Importance weights of the exact target: omega=0 is pi+, omega=-1 is pi-, they average to mu."""
    b = Bandit()
    oracle = TargetOracle.build(b, 50_000, torch.Generator().manual_seed(0))
    g = b.reward(oracle.pool).double()
    mu_mean = float(g.mean())
    r_pos, r_neg = oracle.mean_reward(0.0), oracle.mean_reward(-1.0)
    # mu = Z+ pi+ + Z- pi-, with Z+ = E_mu[sigmoid], Z- = 1 - Z+
    z_pos = float(torch.sigmoid(b.beta * oracle.advantage(oracle.pool).double() + b.k).mean())
    assert z_pos * r_pos + (1 - z_pos) * r_neg == pytest.approx(mu_mean, abs=1e-9)
    values = [oracle.mean_reward(w) for w in (-1.0, 0.0, 0.5, 1.0, 2.0, 4.0)]
    assert is_monotone(values) and values[-1] < float(g.max())


def test_mmd_separates_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    assert mmd(a, b) < 0.1 < mmd(a, b + 0.5)
    with pytest.raises(ValueError, match="mmd"):
        mmd(a, torch.randn(5, 3))


@pytest.mark.slow
def test_cli_exit_code_is_the_verdict(tmp_path, capsys, one_thread):
    """`make verify-algo` relies on the exit code: 0 for the correct algorithm, 1 for a broken variant."""
    code = main(["--out", str(tmp_path / "ok"), "--quick"])
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert (code, data["passed"]) == (0, True) and "OVERALL: PASS" in out, out[-2000:]
    assert (tmp_path / "ok" / "samples.png").stat().st_size > 10_000
    code = main(
        ["--out", str(tmp_path / "broken"), "--quick", "--variant", "swapped_omega", "--steps", "300"]
    )
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "broken" / "results.json").read_text())
    assert (code, data["passed"]) == (1, False) and "OVERALL: FAIL" in out
