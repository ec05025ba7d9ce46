"""What an operator sees on odd input: an unreadable config is one line naming the file
and the fix, `--now` with an offset names the same UTC instant, a health check that
cannot run exits 2 (critical), and schedules keep a $COMPACTOR_CONFIG and survive cron's
and systemd's `%` quoting."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from fleet import NOW, small_store, write_ledger
from maintenance_support import cli, cli_json, site_args
from compactor._errors import ConfigError
from compactor.ledger import Ledger
from compactor.maintenance import Maintenance, MaintenanceConfig, load_config


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
    code, _, err = cli(site_args(tmp_path, "health", "--config", str(folder)))
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
                    now=NOW.astimezone(timezone(timedelta(hours=8))))
    assert m.run_id.startswith("20250601T000000Z")


def test_health_that_cannot_run_exits_2(tmp_path, monkeypatch):
    """A health check that crashes is a failed check: exit 2 (critical) with one line on
    stderr, never Python's exit 1 that a monitor would read as a mere warning."""
    import compactor.maintenance._cli as cli_mod

    def boom(*a, **k):
        raise PermissionError(13, "Permission denied", "/srv/store/sessions")
    monkeypatch.setattr(cli_mod, "check_health", boom)
    (tmp_path / "ledger").mkdir()   # a ledger is there (a missing one is bad input, exit 2)
    (tmp_path / "ledger" / "ledger.jsonl").write_text("")
    code, out, err = cli(site_args(tmp_path, "health"))
    assert code == 2 and "Permission denied" in err
    code, out, err = cli(site_args(tmp_path, "health", "--json"))
    assert code == 2 and json.loads(out)["status"] == "critical"


def test_schedule_keeps_env_config_and_escapes_percent(tmp_path, monkeypatch):
    """A config named by $COMPACTOR_CONFIG is put on the printed command lines (cron has
    not that variable), a `%` in a path is escaped for cron (`\\%`) and systemd (`%%`),
    and the cron health line runs as cron would run it."""
    root = tmp_path / "site 100%"
    small_store(root, {"s-a": 1})
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
