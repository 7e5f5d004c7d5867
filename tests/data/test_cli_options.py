"""The sampling options are defined once (vla_dipole.cli_options): every command that runs a policy
reads --omega / --steps the same way and refuses the same bad values with the same message."""

from __future__ import annotations

import importlib

import pytest

POLICY_CLIS = (
    ("data_prep.build_shards", []),
    ("navsim_adapter.evaluation.evaluate", []),
    ("navsim_adapter.evaluation.submission", []),
    ("navsim_adapter.evaluation.two_stage", ["score"]),
)


@pytest.mark.parametrize(("module", "prefix"), POLICY_CLIS)
def test_every_policy_cli_refuses_a_negative_omega_and_zero_steps(module, prefix, capsys):
    main = importlib.import_module(module).main
    for bad, message in (
        (["--omega", "-1"], "argument --omega: --omega needs one or more values >= 0, got '-1'"),
        (["--omega", "x"], "argument --omega: --omega expects comma-separated numbers, got 'x'"),
        (["--steps", "0"], ": expected an integer >= 1, got 0"),
    ):
        with pytest.raises(SystemExit):
            main([*prefix, *bad])
        assert message in capsys.readouterr().err, (module, bad)


def test_build_shards_keeps_policy_steps_as_an_alias():
    import argparse

    from vla_dipole.cli_options import add_sampling_args

    p = argparse.ArgumentParser()
    add_sampling_args(p, omega=0.0, steps_aliases=("--policy-steps",))
    assert p.parse_args(["--policy-steps", "3"]).steps == 3
    assert p.parse_args([]).omega == 0.0 and p.parse_args([]).steps is None
    sweep = argparse.ArgumentParser()
    add_sampling_args(sweep, omega=(0.0, 1.0), sweep=True)
    assert sweep.parse_args([]).omega == (0.0, 1.0) and sweep.parse_args(["--omega", "0,2"]).omega == (
        0.0,
        2.0,
    )
