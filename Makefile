# vla-dipole: the README's two commands are `make demo` and `make test`.
# Every target installs what it needs first; re-running is cheap (stamp files keyed on pyproject.toml).
SHELL := /bin/bash
PY_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SHARED ?= ../shared
WHEELS := $(SHARED)/wheels
export DS_BUILD_OPS := 0
export DS_ACCELERATOR := cpu
export TOKENIZERS_PARALLELISM := false
DEMO_OUT ?= demo_out

.PHONY: install install-navsim install-slurm test test-fast demo bench lint verify-algo check-real-path hardware clean

$(PY):
	$(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.stamp-install: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev]'
	touch $@

# The official navsim + nuplan-devkit wheels (not on PyPI), used as the reference in tests.
$(VENV)/.stamp-navsim: $(VENV)/.stamp-install
	@if [ -d "$(WHEELS)" ]; then \
	  $(PIP) install -q -r $(WHEELS)/requirements.txt && \
	  $(PIP) install -q --no-deps $(WHEELS)/*.whl && touch $@; \
	else echo "note: $(WHEELS) not found; \`make test\` fails the tests that need the official navsim"; fi

install: $(VENV)/.stamp-install

# navsim 1.1 (the v1 / navtest PDMS leaderboard's scorer) cannot share an environment with 2.0.0: it goes
# into its own folder, put first on PYTHONPATH by the tests that run its scripts in a subprocess.
$(VENV)/.stamp-navsim-v1: $(VENV)/.stamp-navsim
	@if [ -d "$(WHEELS)/v1.1" ]; then \
	  $(PIP) install -q --no-deps --upgrade --target $(VENV)/navsim-v1.1 $(WHEELS)/v1.1/*.whl && touch $@; \
	else echo "note: $(WHEELS)/v1.1 not found; \`make test\` fails the tests that need navsim 1.1"; fi

install-navsim: $(VENV)/.stamp-navsim $(VENV)/.stamp-navsim-v1

# A real single-node SLURM (Debian packages) for the sbatch tests.
install-slurm:
	@if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null) \
	      || echo "note: could not install SLURM; SLURM tests will be skipped"; \
	  else echo "note: SLURM not installed and not root; SLURM tests will be skipped"; fi; \
	fi

# The official packages are required here: a test that needs them fails instead of skipping
# (tests/conftest.py); plain `pytest` without the extras skips those tests.
test: install install-navsim install-slurm
	VLA_DIPOLE_REQUIRE_OFFICIAL=1 $(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow and not slurm and not distributed" tests

demo: install
	$(PY) -m vla_dipole.demo --out $(DEMO_OUT)

# Each module prints its own tables; a missing optional one is reported, not fatal.
BENCH_MODULES := benchmarks.world benchmarks.scenes benchmarks.pdm benchmarks.shards \
	benchmarks.backbone benchmarks.policy benchmarks.training benchmarks.evaluation

bench: install install-navsim
	@for m in $(BENCH_MODULES); do \
	  echo; echo "=== $$m ==="; \
	  $(PY) -m $$m || { echo "bench $$m failed"; exit 1; }; \
	done

# The README's "Each stage on real NAVSIM data" commands, read from README.md and run on synthetic data
# with openvla-7b at tiny widths (tests/demo/test_real_path.py runs the same in `make test`).
check-real-path: install install-navsim
	$(PY) -m vla_dipole.demo.real_path --out $(DEMO_OUT)/real_path

# Per-GPU memory and training FLOPs of openvla-7b for the shipped DeepSpeed configs (the README's table).
hardware: install
	$(PY) -m vla_dipole.training.hardware --gpus 1 2 4 8 --micro-batch 1 8

verify-algo: install
	$(PY) -m vla_dipole.verify_algo --out $(DEMO_OUT)/verify_algo

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-logo  # the floors of the house (pyproject [tool.importlinter])

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
