"""Render the sbatch templates in `slurm/templates/` (placeholders are `{{name}}`; bash's `${}` is untouched)."""

from __future__ import annotations

import re
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def template_text(name: str) -> str:
    return resources.files("slurm").joinpath("templates", name).read_text()


def render(name: str, values: dict[str, object]) -> str:
    """Fill every placeholder of template `name`; a placeholder without a value is an error, not a blank."""
    text = template_text(name)
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - values.keys())
    if missing:
        raise KeyError(f"template slurm/templates/{name} needs values for {missing}")
    # Values may contain other placeholders (the shared `common` block): render twice.
    for _ in range(2):
        text = _PLACEHOLDER.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text
        )
    return text
