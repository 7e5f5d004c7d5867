"""The house's shape: layered imports (pyproject's import-linter contract), no import cycle between
files, no product module over 500 lines. docs/architecture.md draws the layers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("vla_dipole", "navsim_adapter", "data_prep", "slurm")
MAX_LINES = 500


def test_imports_follow_the_layers(capsys):
    """A module imports only its own layer group or below (function-local imports included)."""
    code = lint_imports(config_filenames=(str(REPO / "pyproject.toml"),), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out[-4000:]


def file_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of modules that import each other in a ring (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # imports under `if TYPE_CHECKING:` never run, so they cannot close a cycle
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)


def test_every_module_has_a_floor(graph):
    """A new module must be placed on a floor, or the layers contract would not constrain it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    floors = [m.strip() for c in config["contracts"] for layer in c["layers"] for m in layer.split("|")]
    homeless = sorted(
        m
        for m in graph.modules
        if m not in PACKAGES and not any(m == f or m.startswith(f + ".") for f in floors)
    )
    assert not homeless, f"modules on no floor of pyproject's [tool.importlinter] layers: {homeless}"


def test_no_import_cycle_between_files(graph):
    cycles = file_cycles(graph)
    assert not cycles, "modules importing each other in a ring: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_ring():
    ring = grimp.ImportGraph()
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        ring.add_import(importer=importer, imported=imported)
    assert file_cycles(ring) == [["p.a", "p.b", "p.c"]]


def test_no_product_module_over_500_lines():
    sizes = {
        path.relative_to(REPO): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
    }
    assert len(sizes) > 100
    too_long = {str(p): n for p, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split by job: modules over {MAX_LINES} lines: {too_long}"
