"""Fixtures of the proxy tests (helpers live in ``proxy_helpers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy_helpers import ProxyProcess, start_proxy


@pytest.fixture(autouse=True)
def deep_loopback_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loopback server's listen backlog is the stdlib default (5): 50 connections
    opened at once by the proxy overflow it and some are dropped (a ReadError upstream,
    relayed as 502). Until compactor.testing sets its own, the proxy tests give it 128."""
    from compactor.testing import _server

    monkeypatch.setattr(_server._Server, "request_queue_size", 128, raising=False)


@pytest.fixture
def proxy_process(tmp_path: Path) -> Any:
    """A factory of proxy child processes, all stopped (SIGKILL if needed) at the end."""
    started: list[ProxyProcess] = []

    def make(*args: str) -> ProxyProcess:
        p = start_proxy(tmp_path, *args)
        started.append(p)
        return p

    yield make
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
