"""Shared fixtures for the budget tests: running the real ``compactor`` CLI in-process
(its ``main``) with captured output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from compactor.cli import main


@dataclass
class CliRun:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys) -> Callable[..., CliRun]:
    """``cli("budgets", "check", ...)`` runs ``compactor.cli.main`` and returns its exit
    code, stdout and stderr."""
    def run(*argv: str) -> CliRun:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)
    return run
