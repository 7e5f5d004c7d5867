"""`slurm.submit prep --metric-cache DIR`: the array tasks and the merge job pass the same cache to
build_shards (the merge refuses shards built with other settings), quoted for bash."""

from __future__ import annotations

import shlex

import pytest

from slurm.submit import parse_args, render_jobs, submit


def _build_argv(script: str) -> list[str]:
    """The build_shards command of a rendered script, split the way bash will split it."""
    line = script[script.index("srun python -m data_prep.build_shards") :].replace("\\\n", " ")
    return shlex.split(line.splitlines()[0])


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_prep_dry_run_passes_the_metric_cache_to_tasks_and_merge(tmp_path, capsys):
    cache = tmp_path / "metric cache" / "navtrain"
    submit(
        [
            "prep",
            "--data-root",
            str(tmp_path),
            "--split",
            "trainval",
            "--metric-cache",
            str(cache),
            "--missing-cache",
            "skip",
            "--run-dir",
            str(tmp_path / "run"),
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert out.count(f"--metric-cache {shlex.quote(str(cache))} --missing-cache skip") == 2
    jobs = {
        name: text
        for name, text, _ in render_jobs(parse_args(["prep", "--metric-cache", str(cache)]), tmp_path)
    }
    assert set(jobs) == {"prep", "prep_merge"}
    for name, text in jobs.items():
        argv = _build_argv(text)
        assert _option(argv, "--metric-cache") == str(cache), name
        assert _option(argv, "--missing-cache") is None and _option(argv, "--split") == "mini", name


def test_prep_without_metric_cache_renders_none(tmp_path):
    for _, text, _ in render_jobs(parse_args(["prep"]), tmp_path):
        assert "--metric-cache" not in _build_argv(text)


def test_missing_cache_without_metric_cache_is_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_args(["prep", "--missing-cache", "skip"])
    assert "--missing-cache needs --metric-cache" in capsys.readouterr().err
