"""The `ledger` CLI commands: tail, stats, verify, their output and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compactor.ledger import Ledger
from procio import LineReader
from compactor.ledger._cli import DEFAULT_LEDGER, add_ledger_commands

BUILD_AND_RUN = (
    "import argparse, sys\n"
    "from compactor.ledger._cli import add_ledger_commands\n"
    "p = argparse.ArgumentParser(prog='compactor')\n"
    "sub = p.add_subparsers()\n"
    "add_ledger_commands(sub)\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compactor")
    sub = parser.add_subparsers()
    add_ledger_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def ledger(tmp_path, clock) -> Path:
    """A ledger with compactions, retries, fallbacks and alerts from two agents over two days."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, clock=clock) as led:
        led.emit("compaction", {"agent_id": "a1", "session_id": "s1", "tokens_before": 1000,
                                "tokens_after": 400, "cost_usd": 0.25, "summary": "x"})
        led.emit("summarizer_retry", {"agent_id": "a1", "attempt": 1})
        led.emit("summarizer_fallback", {"agent_id": "a1", "reason": "timeout"})
        clock.advance(hours=2)  # next UTC day
        led.emit("compaction", {"agent_id": "a2", "tokens_before": 500, "tokens_after": 450,
                                "cost_usd": 0.05})
        led.emit("budget_alert", {"agent_id": "a2", "level": "soft"})
        led.emit("usage", {"input_tokens": 10})
    return path


def test_tail_prints_the_last_n_records_readably(ledger, capsys):
    """`ledger tail -n 2` prints the last two records, one line each, with event and agent."""
    assert run(["ledger", "--ledger", str(ledger), "tail", "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "budget_alert" in lines[0] and "agent=a2" in lines[0] and "level=soft" in lines[0]
    assert lines[1].startswith("2025-02-01T01:00:00.000Z") and "usage" in lines[1]


def test_tail_json_and_event_filter(ledger, capsys):
    """`ledger tail --json --event compaction` prints only compaction records as JSON lines."""
    assert run(["ledger", "tail", "--ledger", str(ledger), "--json", "--event", "compaction"]) == 0
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["tokens_before"] for r in records] == [1000, 500]


def test_ledger_path_defaults_to_the_environment(ledger, capsys, monkeypatch):
    """Without --ledger the path comes from $COMPACTOR_LEDGER."""
    monkeypatch.setenv("COMPACTOR_LEDGER", str(ledger))
    assert run(["ledger", "tail", "-n", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["event"] == "usage"


def test_missing_ledger_exits_2_naming_the_path(tmp_path, capsys, monkeypatch):
    """Every command exits 2 with a message when there is no ledger at the resolved path."""
    monkeypatch.delenv("COMPACTOR_LEDGER", raising=False)
    monkeypatch.chdir(tmp_path)
    for cmd in (["tail"], ["stats"], ["verify"]):
        assert run(["ledger", *cmd]) == 2
        assert str(tmp_path / DEFAULT_LEDGER[2:]) in capsys.readouterr().err


def test_no_subcommand_exits_2(capsys):
    """`ledger` alone prints usage and exits 2."""
    assert run(["ledger"]) == 2
    assert "tail, stats or verify" in capsys.readouterr().err


def test_stats_json_totals_per_agent_and_per_day(ledger, capsys):
    """`ledger stats --json` sums compactions, tokens saved, cost, failures, retries and alerts, per agent and per day."""
    assert run(["ledger", "--ledger", str(ledger), "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 6
    assert stats["total"] == {"compactions": 2, "tokens_saved": 650,
                              "cost_usd": pytest.approx(0.30), "summarizer_failures": 1,
                              "retries": 1, "budget_alerts": 1}
    assert stats["by_agent"]["a1"]["tokens_saved"] == 600
    assert stats["by_agent"]["a2"]["budget_alerts"] == 1
    assert stats["by_agent"]["(none)"]["compactions"] == 0
    assert list(stats["by_day"]) == ["2025-01-31", "2025-02-01"]
    assert stats["by_day"]["2025-01-31"]["summarizer_failures"] == 1


def test_stats_table_names_every_metric(ledger, capsys):
    """`ledger stats` prints rich tables with the totals, a per-agent and a per-day breakdown."""
    assert run(["ledger", "--ledger", str(ledger), "stats"]) == 0
    out = capsys.readouterr().out
    for text in ["compactions", "tokens saved", "650", "summarizer failures", "budget alerts",
                 "per agent", "a1", "a2", "per day", "2025-02-01", "0.3000"]:
        assert text in out


def test_stats_since_filters_by_age(tmp_path, capsys):
    """`ledger stats --since 1h` counts only records from the last hour; a bad --since exits 2."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as led:
        led.emit("compaction", {"tokens_before": 10, "tokens_after": 5})
    assert run(["ledger", "--ledger", str(path), "stats", "--since", "1h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["compactions"] == 1
    assert run(["ledger", "--ledger", str(path), "stats", "--since", "2000-01-01", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 1
    assert run(["ledger", "--ledger", str(path), "stats", "--since", "2999-01-01", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 0
    assert run(["ledger", "--ledger", str(path), "stats", "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err


def _tear(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b'{"schema_version":1,"ts":"2025-02-01T01:0')


def test_verify_exit_codes(ledger, capsys):
    """verify exits 0 when clean, 1 with a torn tail, 0 after --repair, and 0 again afterwards."""
    assert run(["ledger", "--ledger", str(ledger), "verify"]) == 0
    assert "status: OK" in capsys.readouterr().out
    _tear(ledger)
    assert run(["ledger", "--ledger", str(ledger), "verify"]) == 1
    out = capsys.readouterr().out
    assert "torn" in out and "--repair" in out
    assert run(["ledger", "--ledger", str(ledger), "verify", "--repair"]) == 0
    assert "[repaired]" in capsys.readouterr().out
    assert run(["ledger", "--ledger", str(ledger), "verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["records"] == 6 and report["torn"] == []


def test_verify_repair_exits_1_when_a_middle_line_is_broken(ledger, capsys):
    """verify --repair still exits 1 when a broken line sits between complete ones (it is reported, not deleted)."""
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(b"".join(lines[:2]) + b"not json\n" + b"".join(lines[2:]))
    assert run(["ledger", "--ledger", str(ledger), "verify", "--repair", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and report["unrepaired"][0]["reason"] == "bad_json"


def _cli(repo_root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    return subprocess.run([sys.executable, "-c", BUILD_AND_RUN, *argv], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cli_in_a_real_process(ledger, repo_root):
    """A real `python -c` process building the parser gets the same exit codes and output."""
    _tear(ledger)
    torn = _cli(repo_root, "ledger", "--ledger", str(ledger), "verify")
    assert torn.returncode == 1 and "torn" in torn.stdout
    fixed = _cli(repo_root, "ledger", "verify", "--ledger", str(ledger), "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    stats = _cli(repo_root, "ledger", "--ledger", str(ledger), "stats", "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["total"]["tokens_saved"] == 650
    tail = _cli(repo_root, "ledger", "--ledger", str(ledger), "tail", "-n", "1", "--json")
    assert json.loads(tail.stdout)["event"] == "usage"


def test_tail_follow_prints_new_records(ledger, repo_root):
    """`ledger tail --follow` in a real process prints records appended after it started."""
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.Popen([sys.executable, "-c", BUILD_AND_RUN, "ledger", "--ledger", str(ledger),
                             "tail", "-n", "1", "--json", "--follow", "--poll", "0.05"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = LineReader(proc.stdout)
        assert json.loads(lines.readline())["event"] == "usage"
        with Ledger(ledger, rotate_bytes=200) as led:
            for i in range(5):
                led.emit("usage", {"followed": i})
                time.sleep(0.01)
        got = [json.loads(lines.readline())["followed"] for _ in range(5)]
        assert got == [0, 1, 2, 3, 4]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
