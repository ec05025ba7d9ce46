"""The CLI on a base install: every command registers and the demo runs with no optional
dependency importable; a command that needs an extra says which, in one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Top-level modules of the optional extras (and of the test tools): hidden from the child.
OPTIONAL = ("langchain_core", "matplotlib", "anthropic", "openai", "hypothesis", "pytest",
            "duckdb", "psycopg", "psycopg_pool", "opentelemetry", "pydantic_ai", "agents",
            "langchain", "starlette", "uvicorn")

BLOCKER = f"""
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose interpreter cannot import any optional dependency."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
                COMPACTOR_DEBUG="")


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=90, cwd=ROOT)


def test_blocker_really_hides_the_extras(base_env):
    """The child cannot import langchain_core (else the other tests here prove nothing)."""
    r = _run(base_env, "-c", "import langchain_core")
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr


def test_help_lists_every_command_without_extras(base_env):
    """`compactor --help` works and lists every sub-command with no extra installed."""
    r = _run(base_env, "-m", "compactor", "--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("replay", "ledger", "sessions", "budgets", "bench", "health", "maintain",
                "schedule", "archive", "config", "store", "proxy"):
        assert cmd in r.stdout


def test_version_from_the_script_and_the_module(base_env):
    """`python -m compactor --version` prints the installed distribution's version."""
    from importlib.metadata import version

    r = _run(base_env, "-m", "compactor", "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"compactor {version('agent-context-compactor')}"


def test_demo_runs_on_the_base_install(base_env):
    """`compactor replay --demo` exits 0 and reports 0 invalid histories without extras."""
    r = _run(base_env, "-m", "compactor", "replay", "--demo", "--json")
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["invalid_histories"] == 0 and out["compactions"] > 0


def test_bench_without_its_extra_is_one_line_naming_it(base_env):
    """`compactor bench` without langchain-core exits 2 with one line naming the extra."""
    r = _run(base_env, "-m", "compactor", "bench", "--quick")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "agent-context-compactor[bench]" in lines[0]
    assert "Traceback" not in r.stderr
