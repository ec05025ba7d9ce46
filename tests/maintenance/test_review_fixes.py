"""Operator-facing edge cases found in review: unreadable configs, non-UTC --now, a health
check that crashes, schedules that survive cron/systemd quoting and a $COMPACTOR_CONFIG,
entries that name another session's payload, and failures outside OSError."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from fleet import NOW, small_store, write_ledger
from maintenance_support import cli, cli_json
from compactor._errors import ConfigError
from compactor._store import SessionStore
from compactor.ledger import Ledger, read_records
from compactor.maintenance import Maintenance, MaintenanceConfig, entries, load_config

NOW_ARGS = ["--now", "2025-06-01T00:00:00Z"]


_store = small_store


def _args(root: Path, *extra: str) -> list[str]:
    return [*extra, "--store", str(root / "store"), "--ledger",
            str(root / "ledger" / "ledger.jsonl"), *NOW_ARGS]


def test_unreadable_config_is_a_one_line_config_error(tmp_path):
    """A config path that is a folder, or a file that is not UTF-8, gives a ConfigError
    naming the file and the fix (CLI exit 2), not a traceback."""
    folder = tmp_path / "conf.d"
    folder.mkdir()
    with pytest.raises(ConfigError, match="fix:") as ei:
        load_config(folder)
    assert ei.value.field == "config"
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[maintenance]\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    code, _, err = cli(_args(tmp_path, "health", "--config", str(folder)))
    assert code == 2 and str(folder) in err and "Traceback" not in err


def test_now_with_an_offset_is_measured_in_utc(tmp_path):
    """`--now` with a +08:00 offset names the same instant as its UTC form: the ratio
    window starts 7 days before that instant (not 8 hours later)."""
    ledger = tmp_path / "ledger" / "ledger.jsonl"
    write_ledger(ledger, last=NOW - timedelta(hours=1))          # ratio 0.6, recent
    t = [NOW - timedelta(days=7) + timedelta(hours=4)]            # inside the 7-day window
    with Ledger(ledger, clock=lambda: t[0], fsync="never") as led:
        led.emit("compaction", {"session_id": "big", "agent_id": "a",
                                "tokens_before": 1_000_000, "tokens_after": 1_000_000,
                                "ratio": 0.0, "summarizer": "extractive"})
    base = ["health", "--store", str(tmp_path / "store"), "--ledger", str(ledger)]
    code_utc, h_utc = cli_json([*base, "--now", "2025-06-01T00:00:00Z"])
    code_off, h_off = cli_json([*base, "--now", "2025-06-01T08:00:00+08:00"])
    assert code_utc == 1 and [a["name"] for a in h_utc["alerts"]] == ["compaction_ratio"]
    assert (code_off, h_off["metrics"]["ratio"]) == (code_utc, h_utc["metrics"]["ratio"])
    assert h_off["now"] == "2025-06-01T00:00:00Z"
    m = Maintenance(MaintenanceConfig(store=tmp_path / "store", ledger=ledger),
                    now=NOW.astimezone(__import__("datetime").timezone(timedelta(hours=8))))
    assert m.run_id.startswith("20250601T000000Z")


def test_health_that_cannot_run_exits_2(tmp_path, monkeypatch):
    """A health check that crashes is a failed check: exit 2 (critical) with one line on
    stderr, never Python's exit 1 that a monitor would read as a mere warning."""
    import compactor.maintenance._cli as cli_mod

    def boom(*a, **k):
        raise PermissionError(13, "Permission denied", "/srv/store/sessions")
    monkeypatch.setattr(cli_mod, "check_health", boom)
    code, out, err = cli(_args(tmp_path, "health"))
    assert code == 2 and "Permission denied" in err
    code, out, err = cli(_args(tmp_path, "health", "--json"))
    assert code == 2 and json.loads(out)["status"] == "critical"


def test_schedule_keeps_env_config_and_escapes_percent(tmp_path, monkeypatch):
    """A config named by $COMPACTOR_CONFIG is put on the printed command lines (cron has
    not that variable), a `%` in a path is escaped for cron (`\\%`) and systemd (`%%`),
    and the cron health line runs as cron would run it."""
    root = tmp_path / "site 100%"
    _store(root, {"s-a": 1})
    write_ledger(root / "ledger" / "ledger.jsonl", last=NOW - timedelta(hours=1))
    conf = root / "compactor.toml"
    conf.write_text("[maintenance.health]\nno_compaction_level = \"critical\"\n")
    monkeypatch.setenv("COMPACTOR_CONFIG", str(conf))
    args = ["--store", str(root / "store"), "--ledger", str(root / "ledger" / "ledger.jsonl")]
    code, out, _ = cli(["schedule", "--print", "cron", *args])
    lines = [x for x in out.splitlines() if x and not x.startswith("#")]
    assert all("--config" in x and str(conf).replace("%", "\\%") in x for x in lines)
    cmd = lines[1].split(" ", 5)[5]
    assert "%" not in cmd.replace("\\%", "")                      # no bare % for cron
    monkeypatch.delenv("COMPACTOR_CONFIG")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPACTOR_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    subprocess.run(["sh", "-c", cmd.replace("\\%", "%")], check=True, timeout=60, env=env)
    log = (root / "store" / ".maintenance" / "health.log").read_text()
    # the env config made no_compaction critical: the cron run sees it too
    assert log.rstrip().endswith("health exit=2"), log
    monkeypatch.setenv("COMPACTOR_CONFIG", str(conf))
    code, out, _ = cli(["schedule", "--print", "systemd", *args])
    execs = [x for x in out.splitlines() if x.startswith("ExecStart=")]
    assert execs and all("site 100%%" in x and "--config" in x for x in execs)


def test_entry_naming_another_payload_cannot_delete_it(tmp_path):
    """An archive entry whose `lossless.file` names another session's payload is refused
    (health reports it), so retention cannot delete that other session's data."""
    _store(tmp_path, {"s-a": 200, "s-b": 201})
    assert cli(_args(tmp_path, "maintain", "--run"))[0] == 0
    arch = entries(tmp_path / "store" / "archive")
    a, b = arch["s-a"], arch["s-b"]
    assert a.path.parent == b.path.parent
    assert cli(["archive", "mark", "s-b", *_args(tmp_path)])[0] == 0
    data = json.loads(a.path.read_text())
    data["lossless"]["file"] = b.payload_path.name
    a.path.write_text(json.dumps(data))
    conf = tmp_path / "c.toml"
    conf.write_text("[maintenance.retention]\ndelete_metadata_only_after_days = 150\n")
    cli(_args(tmp_path, "maintain", "--run", "--config", str(conf)))
    assert entries(tmp_path / "store" / "archive")["s-b"].messages()   # still restorable
    code, h = cli_json(_args(tmp_path, "health"))
    assert code == 2 and any("archive_integrity" in x["message"] for x in h["alerts"])


def test_unexpected_error_is_rolled_back_and_recorded(tmp_path, monkeypatch):
    """A failure that is not an OSError (a bug, a bad value) in the middle of the tiers
    task rolls the step back, fails the run with exit 1 and still writes the ledger
    record; every session stays restorable."""
    import compactor.maintenance._maintain as mm

    msgs = _store(tmp_path, {"s-a": 20, "s-b": 40, "s-c": 60})
    write_ledger(tmp_path / "ledger" / "ledger.jsonl", last=NOW - timedelta(hours=1))
    calls = [0]
    real = mm.tier_form

    def flaky(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            raise ValueError("summarizer returned garbage")
        return real(*a, **k)
    monkeypatch.setattr(mm, "tier_form", flaky)
    code, rep = cli_json(_args(tmp_path, "maintain", "--run"))
    assert code == 1 and rep["status"] == "failed" and "ValueError" in rep["error"]
    assert rep["failed_step"].startswith("archive ")
    rec = [r for r in read_records(tmp_path / "ledger" / "ledger.jsonl")
           if r["event"] == "maintenance"][-1]
    assert rec["status"] == "failed"
    assert not (tmp_path / "store" / ".maintenance" / "journal.jsonl").exists()
    arch, live = entries(tmp_path / "store" / "archive"), SessionStore(tmp_path / "store")
    for sid, m in msgs.items():
        got = arch[sid].messages() if sid in arch else live.restore(sid)
        assert got == m, sid
