"""Reading NAVSIM submission pickles without running the code a pickle can carry.

A pickle names functions that unpickling calls; a file from someone else can name `os.system`.
`load_restricted` resolves only the classes a submission is made of (navsim's Trajectory and
TrajectorySampling, numpy arrays and dtypes, builtin containers, plus what the caller adds: the
submission module its own Trajectory stand-in) and refuses any other global, naming it. Full `pickle.load` stays available behind the CLIs'
`--pickle-may-execute-code` flag, for files you made yourself.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

UNSAFE_FLAG = "--pickle-may-execute-code"
ALLOWED = {
    ("navsim.common.dataclasses", "Trajectory"),
    ("nuplan.planning.simulation.trajectory.trajectory_sampling", "TrajectorySampling"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.dtypes", "Float32DType"),
    ("numpy.dtypes", "Float64DType"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # numpy pickles array bytes through codecs.encode under protocol < 3
}


class UnsafePickleError(ValueError):
    """The pickle names a global outside the allowlist (it could run code); names file and global."""


class _Restricted(pickle.Unpickler):
    def __init__(self, fh, path: Path, allowed: frozenset[tuple[str, str]]) -> None:
        super().__init__(fh)
        self.path = path
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise UnsafePickleError(
                f"{self.path}: refers to {module}.{name}, which is not part of a NAVSIM submission; not "
                f"unpickling it (a pickle can run code). If you made this file yourself, pass {UNSAFE_FLAG}"
            )
        return super().find_class(module, name)


def load_restricted(path: str | Path, also_allowed: Iterable[tuple[str, str]] = ()) -> Any:
    """Unpickle `path` resolving only ALLOWED globals and `also_allowed` (module, name) pairs; errors
    name the file."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            return _Restricted(fh, path, frozenset(ALLOWED) | frozenset(also_allowed)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable pickle: {type(exc).__name__}: {exc}") from None


def load_pickle(
    path: str | Path, may_execute_code: bool, also_allowed: Iterable[tuple[str, str]] = ()
) -> Any:
    """`pickle.load` when the caller said the file may run code, else `load_restricted`."""
    if not may_execute_code:
        return load_restricted(path, also_allowed)
    with Path(path).open("rb") as fh:
        return pickle.load(fh)  # noqa: S301 - the user passed --pickle-may-execute-code
