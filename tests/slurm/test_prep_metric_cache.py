"""`slurm.submit prep --metric-cache DIR`: the array tasks and the merge job pass the same cache to
build_shards (the merge refuses shards built with other settings), quoted for bash."""

from __future__ import annotations

import json
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


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.navsim
def test_prep_array_scores_from_the_metric_cache(slurm_cluster, synthetic_root, tmp_path):
    """A real 2-task array + merge on a root without JSON maps: it can only score through the cache."""
    pytest.importorskip("navsim", reason="the metric-cache path needs the official navsim")
    from navsim_adapter.pdm.metric_cache import write_split_cache

    from .test_slurm_jobs import _logs, _submit_prep

    cache = write_split_cache(synthetic_root, "train", tmp_path / "metric cache", frame_interval=4)
    root = tmp_path / "real-like root"
    root.mkdir()
    for name in ("navsim_logs", "sensor_blobs"):
        (root / name).symlink_to(synthetic_root / name, target_is_directory=True)
    run_dir = tmp_path / "prep"
    ids = _submit_prep(slurm_cluster, run_dir, root, 4, "--metric-cache", str(cache))
    info = slurm_cluster.wait(ids["prep_merge"], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=600)
    assert info["JobState"] == "COMPLETED", _logs(run_dir)
    manifest = json.loads((run_dir / "shards" / "manifest.json").read_text())
    assert manifest["config"]["metric_cache"] == str(cache.resolve())
    assert manifest["num_samples"] == len(list(cache.rglob("metric_cache.pkl")))
