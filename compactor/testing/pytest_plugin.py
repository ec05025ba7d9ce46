"""A pytest fixture for the loopback provider server.

Enable it in your root ``conftest.py``::

    pytest_plugins = ["compactor.testing.pytest_plugin"]

or import the fixture into a conftest: ``from compactor.testing.pytest_plugin import
loopback_server``. Requires pytest (not a runtime dependency of this package).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from ._server import LoopbackServer


@pytest.fixture
def loopback_server() -> Iterator[LoopbackServer]:
    """A started :class:`LoopbackServer` with default settings, stopped after the test.
    Configure it in the test (``server.responder = ...``, ``server.enqueue(...)``)."""
    with LoopbackServer() as server:
        yield server
