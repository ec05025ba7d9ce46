"""Fixtures of the config tests: the compactor CLI run as a real subprocess, in a folder
of the test's own, with no COMPACTOR_* variable leaking in from the caller."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from compactor.cli import _EXTENSIONS

_ENTRY = ("compactor._config_cli", "add_config_commands")
# Until compactor/cli.py registers the config commands, run the same main() with them added.
_SHIM = ("import sys, compactor.cli as c; e = ('compactor._config_cli', 'add_config_commands'); "
         "e in c._EXTENSIONS or c._EXTENSIONS.append(e); sys.exit(c.main(sys.argv[1:]))")


@dataclass
class Run:
    code: int
    out: str
    err: str


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without COMPACTOR_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPACTOR_")}
    env.update(extra)
    return env


@pytest.fixture
def compactor_cli(tmp_path: Path) -> Callable[..., Run]:
    """``compactor_cli("config", "check", ..., env={...}, cwd=...)`` runs
    ``python -m compactor ...`` (timeout 60 s) in ``tmp_path`` by default."""
    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
        head = ["-m", "compactor"] if _ENTRY in _EXTENSIONS else ["-c", _SHIM]
        proc = subprocess.run([sys.executable, *head, *args], capture_output=True, text=True,
                              timeout=60, cwd=cwd or tmp_path, env=clean_env(**(env or {})))
        return Run(proc.returncode, proc.stdout, proc.stderr)
    return run
