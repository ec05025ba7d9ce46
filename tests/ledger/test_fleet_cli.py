"""`compactor ledger stats` and `compactor budgets report` on many ledgers, as real
subprocesses: glob patterns, repeated --ledger, a pattern matching nothing (exit 2, one
line), and --engine python / auto / duckdb when duckdb cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from compactor.ledger import Ledger

pytest.importorskip("duckdb")

ROOT = Path(__file__).resolve().parents[2]
SHARDS, PER_SHARD = 3, 60

BLOCK_DUCKDB = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] == 'duckdb':
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Block())
"""


def _write(root: Path) -> None:
    """SHARDS ledgers of PER_SHARD records each: shard s writes s+1 tokens saved per
    compaction, every third record a usage record; segments rotate and are gzipped."""
    for shard in range(SHARDS):
        at = [datetime(2025, 6, 1, tzinfo=timezone.utc)]

        def clock() -> datetime:
            at[0] += timedelta(minutes=30)
            return at[0]

        with Ledger(root / f"host-{shard}" / "ledger.jsonl", rotate_bytes=1_500,
                    fsync="never", clock=clock) as ledger:
            for i in range(PER_SHARD):
                if i % 3 == 2:
                    ledger.emit("usage", {"agent_id": f"agent-{shard}", "tokens": 900 + i,
                                          "budget_tokens": 1_000, "profile": "specialist-narrow"})
                else:
                    ledger.emit("compaction", {"agent_id": f"agent-{shard}",
                                               "tokens_before": 100 + shard + 1,
                                               "tokens_after": 100, "cost_usd": 0.125})


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    _write(root)
    assert len(list(root.glob("host-*/*.jsonl.gz"))) >= SHARDS
    return root


def _run(*args: str, block: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COMPACTOR_DEBUG="")
    if block is not None:
        (block / "sitecustomize.py").write_text(BLOCK_DUCKDB)
        env["PYTHONPATH"] = os.pathsep.join([str(block), str(ROOT)])
    return subprocess.run([sys.executable, "-m", "compactor", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=90)


def _stats(*args: str, block: Path | None = None) -> dict:
    r = _run("ledger", *args, "--json", block=block)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_glob_reads_every_shard_and_both_engines_agree(fleet_dir):
    """`ledger stats --ledger 'host-*/ledger.jsonl*'` counts every record of the three shards, with the same JSON from both engines."""
    pattern = str(fleet_dir / "host-*" / "ledger.jsonl*")
    duck = _stats("stats", "--ledger", pattern, "--engine", "duckdb")
    assert duck["records"] == SHARDS * PER_SHARD
    assert duck["total"]["compactions"] == SHARDS * PER_SHARD * 2 // 3
    assert duck["total"]["tokens_saved"] == sum((s + 1) * PER_SHARD * 2 // 3
                                                for s in range(SHARDS))
    assert duck["total"]["cost_usd"] == 0.125 * (SHARDS * PER_SHARD * 2 // 3)
    assert sorted(duck["by_agent"]) == [f"agent-{s}" for s in range(SHARDS)]
    assert _stats("stats", "--ledger", pattern, "--engine", "python") == duck


def test_repeated_ledger_flags_before_and_after_the_command_add_up(fleet_dir):
    """`--ledger A stats --ledger B` reads both ledgers (and only them)."""
    a, b = (str(fleet_dir / f"host-{s}" / "ledger.jsonl") for s in (0, 2))
    got = _stats("--ledger", a, "stats", "--ledger", b)
    assert got["records"] == 2 * PER_SHARD
    assert sorted(got["by_agent"]) == ["agent-0", "agent-2"]


@pytest.mark.parametrize("command", [["ledger", "stats"], ["budgets", "report"]])
def test_a_pattern_matching_nothing_is_one_line_exit_2(fleet_dir, command):
    """A --ledger pattern that matches no file exits 2 with one stderr line naming the pattern and the fix."""
    pattern = str(fleet_dir / "nohost-*" / "ledger.jsonl*")
    r = _run(*command, "--ledger", pattern)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert pattern in line and "matched no ledger file" in line and "fix:" in line


def test_without_duckdb_python_and_auto_work_and_duckdb_names_the_extra(fleet_dir, tmp_path):
    """With duckdb unimportable, --engine python and auto give the duckdb engine's figures; --engine duckdb exits 2 naming the [duckdb] extra."""
    pattern = str(fleet_dir / "host-*" / "ledger.jsonl*")
    want = _stats("stats", "--ledger", pattern, "--engine", "duckdb")
    (tmp_path / "sitecustomize.py").write_text(BLOCK_DUCKDB)
    blocked = subprocess.run([sys.executable, "-c", "import duckdb"], capture_output=True,
                             env=dict(os.environ, PYTHONPATH=str(tmp_path)), timeout=60)
    assert blocked.returncode != 0 and b"ModuleNotFoundError" in blocked.stderr
    for engine in ("python", "auto"):
        assert _stats("stats", "--ledger", pattern, "--engine", engine, block=tmp_path) == want
    r = _run("ledger", "stats", "--ledger", pattern, "--engine", "duckdb", block=tmp_path)
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "agent-context-compactor[duckdb]" in line and "Traceback" not in r.stderr


def test_budgets_report_reads_a_glob_the_same_with_both_engines(fleet_dir, tmp_path):
    """`budgets report --ledger GLOB --json` counts every shard's usage records, identically with duckdb and (duckdb blocked) python."""
    pattern = str(fleet_dir / "host-*" / "ledger.jsonl*")
    duck = _run("budgets", "report", "--ledger", pattern, "--json", "--engine", "duckdb")
    assert duck.returncode == 0, duck.stderr
    got = json.loads(duck.stdout)
    assert got["invocations"] == SHARDS * PER_SHARD // 3
    (narrow,) = got["by_profile"]
    assert narrow["name"] == "specialist-narrow" and narrow["exceeded"] == 0
    py = _run("budgets", "report", "--ledger", pattern, "--json", "--engine", "python",
              block=tmp_path)
    assert py.returncode == 0, py.stderr
    assert json.loads(py.stdout) == got


def test_a_file_list_the_shell_expanded_counts_each_ledger_once(fleet_dir):
    """`--ledger` followed by every file an unquoted glob expands to (segments, gzip, lock files) reads each ledger once and creates no file."""
    files = sorted(str(p) for p in fleet_dir.glob("host-*/ledger*"))
    assert any(f.endswith(".lock") for f in files) and any(f.endswith(".gz") for f in files)
    before = sorted(fleet_dir.rglob("*"))
    got = _stats("stats", "--ledger", *files)
    assert got == _stats("stats", "--ledger", str(fleet_dir / "host-*" / "ledger.jsonl*"))
    assert got["records"] == SHARDS * PER_SHARD
    r = _run("budgets", "report", "--ledger", *files, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["invocations"] == SHARDS * PER_SHARD // 3
    assert sorted(fleet_dir.rglob("*")) == before
