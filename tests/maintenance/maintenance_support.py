"""Fixtures for the maintenance tests: the 400-day fleet (built once, copied per test),
a smaller fleet for the crash tests, and helpers that run the real CLI in-process or as
a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import fleet as fleet_mod
from compactor.cli import main

REPO = Path(__file__).resolve().parents[2]


class Fleet:
    """A copy of a generated fleet: ``root/store``, ``root/ledger/ledger.jsonl``."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self.store = root / "store"
        self.ledger = root / "ledger" / "ledger.jsonl"

    def args(self, *extra: str, now: str = fleet_mod.NOW_ISO) -> list[str]:
        return [*extra, "--store", str(self.store), "--ledger", str(self.ledger), "--now", now]


def _template(tmp_path_factory: pytest.TempPathFactory, shared: Path, n_tau: int,
              n_locomo: int, name: str) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp(name)
    return root, fleet_mod.build_fleet(root, shared, n_tau=n_tau, n_locomo=n_locomo)


@pytest.fixture(scope="session")
def fleet_template(tmp_path_factory, shared_data):
    return _template(tmp_path_factory, shared_data, 200, 5, "fleet400")


@pytest.fixture(scope="session")
def small_template(tmp_path_factory, shared_data):
    return _template(tmp_path_factory, shared_data, 24, 1, "fleet-small")


def _copy(template: tuple[Path, dict[str, Any]], dest: Path) -> Fleet:
    shutil.copytree(template[0], dest / "fleet", symlinks=True)  # copy2 keeps mtimes
    return Fleet(dest / "fleet", template[1]["sessions"])


@pytest.fixture
def fleet(fleet_template, tmp_path) -> Fleet:
    """A fresh copy of the 205-session, 400-day fleet."""
    return _copy(fleet_template, tmp_path)


@pytest.fixture
def small_fleet(small_template, tmp_path) -> Fleet:
    """A fresh copy of a 25-session fleet over 400 days (24 tau-bench runs, 1 LoCoMo)."""
    return _copy(small_template, tmp_path)


def site_args(root: Path, *extra: str, now: datetime = fleet_mod.NOW) -> list[str]:
    """``EXTRA --store ROOT/store --ledger ROOT/ledger/ledger.jsonl --now NOW`` (NOW in UTC)."""
    return [*extra, "--store", str(root / "store"), "--ledger",
            str(root / "ledger" / "ledger.jsonl"), "--now", now.strftime("%Y-%m-%dT%H:%M:%SZ")]


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``compactor ARGV`` in-process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse errors
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def cli_json(argv: list[str]) -> tuple[int, Any]:
    code, out, err = cli([*argv, "--json"])
    assert out, err
    return code, json.loads(out)


#: The crash tests' runner: ``compactor`` with a progress hook installed in the child only.
FAULT_CLI = Path(__file__).with_name("fault_cli.py")


def subprocess_env() -> dict[str, str]:
    """This environment without any ``COMPACTOR_*`` variable, importing this tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPACTOR_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def proc_argv(argv: list[str], fault: str | None = None, trace: Path | None = None) -> list[str]:
    """The command line of ``compactor ARGV`` in a child process; with ``fault`` (a
    fault_cli.py SPEC) or ``trace`` it runs through fault_cli.py."""
    if fault is None and trace is None:
        return [sys.executable, "-m", "compactor.cli", *argv]
    head = [fault or ""] + (["--trace", str(trace)] if trace is not None else [])
    return [sys.executable, str(FAULT_CLI), *head, "--", *argv]


def run_proc(argv: list[str], fault: str | None = None, trace: Path | None = None,
             **kw: Any) -> subprocess.CompletedProcess:
    """Run ``compactor ARGV`` as a real subprocess (see :func:`proc_argv`)."""
    return subprocess.run(proc_argv(argv, fault, trace), capture_output=True, text=True,
                          env=subprocess_env(), timeout=120, **kw)
