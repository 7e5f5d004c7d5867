"""Pool workers that die with their parent: a kill -9 of a build leaves no orphan still writing.

`die_with_parent(pid)` runs in each worker's initializer. On Linux it asks the kernel for SIGKILL when
the parent exits (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls the parent pid. Both check
once right away, for a parent that died before the worker got here.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Make this process exit as soon as `parent_pid` (the process that started it) is gone."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(poll_s)
            os._exit(1)

        threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
