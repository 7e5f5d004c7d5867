"""`make test` requires the official navsim / nuplan-devkit: a test that needs them fails there instead
of skipping (tests/conftest.py), while plain `pytest` without the extras skips it with the reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE = "VLA_DIPOLE_REQUIRE_OFFICIAL"
# one test checked by the shared `navsim` marker, one module skipped by its own importorskip at import
TARGETS = (
    "tests/eval/test_extended_comfort.py::test_matches_official_two_frame_extended_comfort",
    "tests/synthetic/test_against_navsim.py",
)


def run_without_official(tmp_path: Path, required: bool) -> subprocess.CompletedProcess:
    """Run TARGETS in a pytest subprocess where `import navsim` / `import nuplan` fail as if not installed."""
    for name in ("navsim", "nuplan"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n'
        )
    env = {k: v for k, v in os.environ.items() if k != REQUIRE}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), str(REPO), env.get("PYTHONPATH")) if p)
    if required:
        env[REQUIRE] = "1"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            *TARGETS,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("required", [False, True], ids=["pytest", "make-test"])
def test_missing_official_packages_skip_only_outside_make_test(tmp_path, required):
    proc = run_without_official(tmp_path, required)
    out = proc.stdout + proc.stderr
    if required:
        assert proc.returncode != 0, out
        assert "skipped" not in out.splitlines()[-1], out
        assert re.search(r"\b2 errors?\b", out.splitlines()[-1]), out
        assert out.count(f"{REQUIRE}=1 (set by `make test`") >= 2, out
    else:
        assert proc.returncode == 0, out
        assert re.search(r"\b2 skipped\b", out.splitlines()[-1]), out
    # the reasons of both checks reach the user
    assert "not importable (make install-navsim)" in out and "not installed (make install-navsim)" in out, out


def test_make_test_requires_the_official_packages():
    """The CI entry point (`make test`) is the one that sets REQUIRE: it must not lose it."""
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe is not None, "Makefile: no `test:` target"
    assert re.search(rf"\b{REQUIRE}=1 \$\(PY\) -m pytest\b", recipe.group(1)), recipe.group(1)
