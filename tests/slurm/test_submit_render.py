"""The rendered sbatch scripts: right accelerate arguments, dependencies, and valid bash."""

from __future__ import annotations

import subprocess

import pytest

from slurm.submit import parse_args, render_jobs


def _scripts(argv, tmp_path):
    return {name: (text, deps) for name, text, deps in render_jobs(parse_args(argv), tmp_path)}


def test_dry_run_4_nodes_8_gpus_has_multinode_accelerate_args(tmp_path, capsys):
    from slurm.submit import submit

    submit(
        [
            "train",
            "--nodes",
            "4",
            "--gpus-per-node",
            "8",
            "--partition",
            "gpu",
            "--account",
            "proj",
            "--run-dir",
            str(tmp_path),
            "--dry-run",
            "stage=dipole",
            "model=openvla-7b",
        ]
    )
    out = capsys.readouterr().out
    assert "#SBATCH --nodes=4" in out
    assert "#SBATCH --ntasks-per-node=1" in out
    assert "#SBATCH --gpus-per-node=8" in out
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --account=proj" in out
    assert "#SBATCH --signal=USR1@" in out and "#SBATCH --requeue" in out
    assert '--num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID"' in out
    assert "--num_processes $(( SLURM_NNODES * 8 ))" in out
    assert '--main_process_ip "$MASTER_ADDR"' in out and '--main_process_port "$MASTER_PORT"' in out
    assert "scontrol show hostnames" in out
    assert "configs/accelerate/multinode.yaml" in out
    assert "stage=dipole model=openvla-7b" in out
    assert not (tmp_path / "slurm").exists(), "--dry-run must not write or submit anything"


def test_pipeline_chains_stages_and_scripts_are_valid_bash(tmp_path):
    scripts = _scripts(
        [
            "pipeline",
            "--gpus-per-node",
            "0",
            "--num-parts",
            "3",
            "--data-root",
            str(tmp_path),
            "--run-dir",
            str(tmp_path),
            "model=openvla-7b",
        ],
        tmp_path,
    )
    assert list(scripts) == ["prep", "prep_merge", "train", "eval", "eval_merge"]
    # the shards store what the trained model reads
    assert "--model openvla-7b" in scripts["prep"][0] and "--model openvla-7b" in scripts["prep_merge"][0]
    assert scripts["prep_merge"][1] == ["prep"] and scripts["train"][1] == ["prep_merge"]
    assert scripts["eval"][1] == ["train"] and scripts["eval_merge"][1] == ["eval"]
    assert "#SBATCH --array=0-2" in scripts["prep"][0] and "--num-parts 3" in scripts["prep"][0]
    assert '--chunk "$SLURM_ARRAY_TASK_ID/3"' in scripts["eval"][0]
    for name, (text, _) in scripts.items():
        assert "{{" not in text, f"unrendered placeholder in {name}"
        res = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
        assert res.returncode == 0, f"{name}.sbatch is not valid bash: {res.stderr}"


def test_bad_override_is_rejected(tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["train", "not-a-key-value"])


def test_hostile_values_stay_single_arguments(tmp_path):
    """Every user value reaches the job's command as data: run the rendered build_shards / evaluate lines
    through bash (srun replaced by printf) and check nothing ran and each value arrived whole."""
    split = "mini; touch PWNED #$(touch PWNED2)`touch PWNED3`"
    jobs = _scripts(
        [
            "pipeline",
            "--split",
            split,
            "--omega",
            "1;touch PWNED4",
            "--eval-args",
            "--name '$(touch PWNED5)'",
            "--prep-args",
            "--workers 2; touch PWNED6",
            "--data-root",
            str(tmp_path / "data root"),
        ],
        tmp_path,
    )
    for name, module in (("prep", "data_prep.build_shards"), ("eval", "navsim_adapter.evaluation.evaluate")):
        text = jobs[name][0].replace("\\\n", " ")
        line = next(ln for ln in text.splitlines() if f"srun python -m {module}" in ln)
        script = line.replace(f"srun python -m {module}", "printf '%s\\n'")
        env = {"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "0", "SLURM_CPUS_PER_TASK": "1"}
        out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        args = out.stdout.splitlines()
        assert args[args.index("--split") + 1] == split
        assert args[args.index("--data-root") + 1] == str(tmp_path / "data root")
        if name == "eval":
            assert args[args.index("--omega") + 1] == "1;touch PWNED4"
            assert args[args.index("--name") + 1] == "$(touch PWNED5)"
        else:
            assert "2;" in args and "touch" in args  # options, split like a shell, never a command
    assert not list(tmp_path.glob("PWNED*"))
    with pytest.raises(SystemExit, match="--partition"):
        _scripts(["train", "--partition", "gpu\n#SBATCH --wrap=evil"], tmp_path)
