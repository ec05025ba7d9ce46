"""Shared fixtures for the ledger tests: an injectable clock, raw file bytes, and the
command line of the writer subprocess (helpers are fixtures, so no test imports this file)."""

from __future__ import annotations

import gzip
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]


class FakeClock:
    """A settable clock returning aware UTC datetimes."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 1, 31, 23, 0, 0, tzinfo=timezone.utc))


def _all_bytes(directory: Path) -> bytes:
    out = b""
    for p in sorted(directory.iterdir()):
        if p.is_file():
            data = p.read_bytes()
            out += data
            if p.name.endswith(".gz"):
                out += gzip.decompress(data)
    return out


@pytest.fixture
def all_bytes() -> Callable[[Path], bytes]:
    """Every byte of every file in a directory, gzip files also decompressed."""
    return _all_bytes


@dataclass(frozen=True)
class WriterCommand:
    """How to start ``ledger_writer.py`` in a subprocess."""

    python: str
    script: str
    env: dict[str, str]

    def argv(self, *args: object) -> list[str]:
        return [self.python, self.script, *map(str, args)]


@pytest.fixture
def writer() -> WriterCommand:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LEDGER_TEST_SPLIT_WRITE", None)
    return WriterCommand(sys.executable, str(_HERE / "ledger_writer.py"), env)


@pytest.fixture
def repo_root() -> Path:
    return _REPO
