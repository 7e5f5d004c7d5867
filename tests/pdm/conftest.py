"""Fixtures for the PDM engine tests: toy-road contexts in the global frame."""

from __future__ import annotations

import pytest

from navsim_adapter.pdm.toy import toy_context


@pytest.fixture
def road():
    """Factory: a toy-road context (road frame = global frame) with the given agents."""

    def make(agents=(), ego_x=0.0, ego_speed=10.0, red_steps=None, **kw):
        return toy_context(0, ego_x=ego_x, ego_speed=ego_speed, agents=list(agents), red_steps=red_steps,
                           origin=(0.0, 0.0, 0.0), **kw)

    return make
