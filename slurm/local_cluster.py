"""A throw-away single-node SLURM cluster (slurmctld + slurmd + munged) for testing our sbatch scripts.

Recipe verified on Debian 12's slurm-wlm 22.05 (`make install-slurm` installs the packages). Everything lives in one
directory: config, state, spool, logs and pid files, so stopping it is exact: we only ever kill the
daemons this object started, by the pids in their pid files.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster:
    """One node, one partition (`debug`), CPUs as given; `env` holds SLURM_CONF for client commands."""

    root: Path
    cpus: int = 2
    real_memory_mb: int = 8000
    hostname: str = field(default_factory=socket.gethostname)
    _started_pids: list[int] = field(default_factory=list)
    _started_munge: bool = False

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ctld_port, d_port = _free_port(), _free_port()
        r = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=local",
                    f"SlurmctldHost={self.hostname}",
                    "SlurmUser=root",
                    f"SlurmctldPort={ctld_port}",
                    f"SlurmdPort={d_port}",
                    "AuthType=auth/munge",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "JobRequeue=1",
                    "MinJobAge=3600",
                    "SchedulerParameters=defer_batch=0",
                    f"NodeName={self.hostname} CPUs={self.cpus} RealMemory={self.real_memory_mb} State=UNKNOWN",
                    f"PartitionName=debug Nodes={self.hostname} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _ensure_munge(self) -> None:
        ok = subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0
        if ok:
            return
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self._started_munge = True
        for _ in range(50):
            if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("munged did not come up (check /var/log/munge/munged.log)")

    def start(self, timeout: float = 30.0) -> LocalCluster:
        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"SLURM binaries missing: {missing}; install with `make install-slurm`")
        self.write_config()
        self._ensure_munge()
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for pidfile in ("slurmctld.pid", "slurmd.pid"):
                p = self.root / pidfile
                if p.exists() and p.read_text().strip():
                    pid = int(p.read_text().strip())
                    if pid not in self._started_pids:
                        self._started_pids.append(pid)
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if out.returncode == 0 and out.stdout.strip() in {"idle", "mixed", "allocated"}:
                return self
            time.sleep(0.5)
        self.stop()
        log = (
            (self.root / "log" / "slurmctld.log").read_text()[-2000:] if (self.root / "log").exists() else ""
        )
        raise RuntimeError(f"local SLURM did not become idle within {timeout}s; slurmctld log tail:\n{log}")

    def stop(self) -> None:
        for pid in reversed(self._started_pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in self._started_pids:
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        self._started_pids.clear()
        if self._started_munge:
            pidfile = Path("/run/munge/munged.pid")
            if pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
            self._started_munge = False

    # -- client helpers -----------------------------------------------------------------
    def job_state(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (accounting is off here, so squeue/scontrol are the source)."""
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, env=self.env
        )
        fields: dict[str, str] = {}
        for tok in out.stdout.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                fields[k] = v
        return fields

    def wait(self, job_id: str, states: set[str], timeout: float, stable_for: float = 0.0) -> dict[str, str]:
        """Poll until the job is in one of `states` (for `stable_for` seconds: a requeue passes through
        transient end states)."""
        deadline = time.time() + timeout
        info: dict[str, str] = {}
        since: tuple[str, float] | None = None
        while time.time() < deadline:
            info = self.job_state(job_id)
            state = info.get("JobState", "")
            if state in states:
                if since is None or since[0] != state:
                    since = (state, time.time())
                if time.time() - since[1] >= stable_for:
                    return info
            else:
                since = None
            time.sleep(1.0)
        raise TimeoutError(f"job {job_id} not in {states} after {timeout}s; last: {info.get('JobState')}")
