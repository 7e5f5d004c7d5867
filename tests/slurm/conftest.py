"""A real single-node SLURM for the sbatch tests (started once per session, stopped at the end)."""

from __future__ import annotations

import os

import pytest

from slurm.local_cluster import LocalCluster, missing_binaries


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM not installed ({missing}); `make install-slurm` installs it")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM test cluster runs its daemons as root")
    cluster = LocalCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()
