"""`health` alert conditions and exit codes, the TOML config's validation, `schedule`,
the `archive` commands and the ledger tasks, on small synthetic data (no shared data)."""

from __future__ import annotations

import gzip
import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from maintenance_support import cli, cli_json, run_proc
from compactor import content_hash
from fleet import NOW, set_age, write_ledger
from compactor._errors import ConfigError
from compactor._store import SessionStore
from compactor.ledger import read_records
from compactor.maintenance import MaintenanceConfig, importance, load_config, parse_config
from compactor.maintenance._config import DEFAULT_TOML
from compactor.maintenance._profile import Profile


class Site:
    """A tiny deployment: 3 sessions (2, 20 and 200 days idle) and a healthy ledger."""

    def __init__(self, root: Path) -> None:
        self.root, self.store = root, root / "store"
        self.ledger = root / "ledger" / "ledger.jsonl"
        st = SessionStore(self.store)
        self.messages = {}
        for sid, age in (("s-new", 2), ("s-mid", 20), ("s-old", 200)):
            msgs = [{"role": "user", "content": f"Please rebook order ORD-{age:04d} to Paris."},
                    {"role": "assistant", "content": f"Done: ORD-{age:04d} now flies on May {age % 28 + 1}."}]
            st.append(sid, [(i, content_hash(m), m) for i, m in enumerate(msgs)])
            set_age(st.session_dir(sid), NOW - timedelta(days=age))
            self.messages[sid] = msgs

    def args(self, *extra: str, config: Path | None = None) -> list[str]:
        out = [*extra, "--store", str(self.store), "--ledger", str(self.ledger),
               "--now", "2025-06-01T00:00:00Z"]
        return out + (["--config", str(config)] if config else [])


@pytest.fixture
def site(tmp_path) -> Site:
    s = Site(tmp_path)
    write_ledger(s.ledger, last=NOW - timedelta(hours=5))
    return s


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "compactor.toml"
    p.write_text(text)
    return p


def test_health_ok_exits_0_in_a_real_process(site):
    """A recent compaction at a 60 % ratio, a small clean ledger: exit 0, no alert."""
    p = run_proc(site.args("health"))
    assert p.returncode == 0, p.stdout
    assert "status: OK (exit 0)" in p.stdout
    code, h = cli_json(site.args("health"))
    assert code == 0 and h["alerts"] == [] and h["metrics"]["ratio"] == 0.6
    assert h["metrics"]["live_sessions"] == 3 and h["metrics"]["compactions"] == 24


def test_health_warns_when_no_compaction_for_two_days(tmp_path):
    """The last compaction 3 days ago -> warning, exit 1 (critical when configured so)."""
    s = Site(tmp_path)
    write_ledger(s.ledger, last=NOW - timedelta(days=3))
    code, h = cli_json(s.args("health"))
    assert code == 1 and [a["name"] for a in h["alerts"]] == ["no_compaction"]
    cfg = _toml(tmp_path, '[maintenance.health]\nno_compaction_level = "critical"\n')
    assert cli(s.args("health", config=cfg))[0] == 2
    cfg = _toml(tmp_path, "[maintenance.health]\nno_compaction_days = 4\n")
    assert cli(s.args("health", config=cfg))[0] == 0


def test_health_warns_on_a_large_ledger(site, tmp_path):
    """The ledger's bytes over ledger_max_mb -> warning, exit 1 (checked in a real process)."""
    size = sum(p.stat().st_size for p in site.ledger.parent.glob("ledger*.jsonl*"))
    cfg = _toml(tmp_path, f"[maintenance.health]\nledger_max_mb = {size / 2e6}\n")
    p = run_proc(site.args("health", "--json", config=cfg))
    assert p.returncode == 1
    assert [a["name"] for a in json.loads(p.stdout)["alerts"]] == ["ledger_size"]
    cfg = _toml(tmp_path, f"[maintenance.health]\nledger_max_mb = {size * 2 / 1e6}\n")
    assert cli(site.args("health", config=cfg))[0] == 0


def test_health_warns_on_a_low_compaction_ratio(tmp_path):
    """Compactions that removed 30 % of the tokens -> warning, exit 1."""
    s = Site(tmp_path)
    write_ledger(s.ledger, last=NOW - timedelta(hours=1), ratio=0.3)
    code, h = cli_json(s.args("health"))
    assert code == 1 and [a["name"] for a in h["alerts"]] == ["compaction_ratio"]
    assert h["metrics"]["ratio"] == pytest.approx(0.3, abs=0.01)


def test_health_is_critical_on_a_failed_check(site):
    """A torn ledger line, then a damaged archive payload -> critical, exit 2."""
    with open(site.ledger, "ab") as fh:
        fh.write(b'{"schema_version":1,"ts":"2025-05-31')
    code, h = cli_json(site.args("health"))
    assert code == 2 and "ledger_integrity" in h["alerts"][0]["message"]
    assert cli(site.args("maintain", "--run", "--only", "verify"))[0] == 0
    backups = list((site.store / ".maintenance" / "torn").iterdir())
    assert [b.read_bytes() for b in backups] == [b'{"schema_version":1,"ts":"2025-05-31']
    assert cli(site.args("health"))[0] == 0
    assert cli(["archive", "add", "s-new", *site.args()])[0] == 0
    payload = next((site.store / "archive").rglob("*.jsonl.gz"))
    payload.write_bytes(payload.read_bytes()[:-9] + b"x" * 9)       # same size: --deep
    assert cli(site.args("health"))[0] == 0
    code, h = cli_json(site.args("health", "--deep"))
    assert code == 2 and "archive_integrity" in h["alerts"][0]["message"]
    payload.write_bytes(payload.read_bytes()[:-20])                   # cut: always seen
    code, h = cli_json(site.args("health"))
    assert code == 2 and "archive_integrity" in h["alerts"][0]["message"]
    code, out, err = cli(["archive", "restore", "s-new", *site.args()])
    assert code == 1 and "s-new" in err


def test_config_errors_name_the_key_and_the_fix(tmp_path, site):
    """An unknown key or a bad value is a ConfigError naming the dotted key and a fix; the
    CLI exits 2 with that message; the printed defaults parse back to the defaults."""
    cases = {
        "[maintenance.tiers]\nfull_dayz = 7\n": ("maintenance.tiers.full_dayz", "unknown key"),
        "[maintenance.tiers]\nfull_days = -1\n": ("maintenance.tiers.full_days", "> 0"),
        "[maintenance.tiers]\nkey_points_share = 1.5\n": ("maintenance.tiers.key_points_share",
                                                         "<= 1"),
        "[maintenance.tiers]\nfull_days = 40\n": ("maintenance.tiers", "must increase"),
        '[maintenance.health]\nledger_max_mb = "50"\n': ("maintenance.health.ledger_max_mb",
                                                        "expected a number"),
        '[maintenance.health]\nfailed_check_level = "loud"\n': (
            "maintenance.health.failed_check_level", "warning"),
        "[maintenance.retention]\nkeep_days = 3\n": ("maintenance.retention.keep_days",
                                                     "full_days"),
        "[maintenance]\nstorage = 'x'\n": ("maintenance.storage", "unknown key"),
        "[maintenance.importance]\nturns = 2.5\n": ("maintenance.importance.turns",
                                                    "integer"),
    }
    for text, (key, words) in cases.items():
        path = _toml(tmp_path, text)
        with pytest.raises(ConfigError) as ei:
            load_config(path)
        assert ei.value.field == key and words in str(ei.value) and "fix:" in str(ei.value)
        assert ei.value.source == str(path)
        code, _, err = cli(site.args("health", config=path))
        assert code == 2 and key in err
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_toml(tmp_path, "[maintenance\n"))
    assert parse_config({"other_subsystem": {"x": 1}}) == MaintenanceConfig()
    import tomllib
    parsed = parse_config(tomllib.loads(DEFAULT_TOML))
    assert (parsed.tiers, parsed.importance, parsed.retention, parsed.health) == (
        MaintenanceConfig().tiers, MaintenanceConfig().importance,
        MaintenanceConfig().retention, MaintenanceConfig().health)


def test_importance_signals_and_marking():
    """The score is the weighted, saturating sum of the four signals; a mark makes it 1."""
    cfg = MaintenanceConfig().importance
    p = Profile("anthropic", 10, 10_000, 10, 20, {"search": 20}, 0, ["user", "assistant"], {})
    imp = importance(p, cfg)
    assert imp.signals == {"length": 0.125, "turns": 0.125, "errors": 0.0, "tool_use": 0.25}
    assert imp.score == 0.5 and not imp.important
    busy = Profile("anthropic", 10, 10_000, 10, 20, {}, 3, [], {})
    assert importance(busy, cfg).important                  # 0.75 with 3 errors
    assert importance(p, cfg, marked=True).score == 1.0
    assert importance(p, parse_config({"maintenance": {"importance": {"marked": ["vip-*"]}}})
                      .importance, session_id="vip-7").marked


def test_retention_deletes_only_by_explicit_rule(site, tmp_path):
    """By default nothing is deleted; delete_metadata_only_after_days removes the old
    metadata-only session, and keep_important protects a marked one."""
    assert cli(site.args("maintain", "--run"))[0] == 0
    assert {json.loads(p.read_text())["session_id"]
            for p in (site.store / "archive").rglob("*.json")} == {"s-mid", "s-old"}
    assert cli(["archive", "mark", "s-old", *site.args()])[0] == 0
    cfg = _toml(tmp_path, "[maintenance.retention]\ndelete_metadata_only_after_days = 150\n")
    code, rep = cli_json(site.args("maintain", "--run", config=cfg))
    assert code == 0 and rep["deleted"] == []                 # marked: kept forever
    assert cli(["archive", "mark", "s-old", "--unmark", *site.args()])[0] == 0
    code, rep = cli_json(site.args("maintain", "--run", config=cfg))
    assert rep["deleted"] == ["s-old"] and rep["counts"]["delete"] == 1
    names = sorted(p.name for p in (site.store / "archive").rglob("*") if p.is_file())
    assert names == ["s-mid.json", "s-mid.jsonl.gz"]


def test_archive_restore_to_store_and_list(site, tmp_path):
    """`archive restore --out` gives the original messages; `--to-store` puts the session
    back so `sessions restore` works again; `list` shows tiers."""
    assert cli(site.args("maintain", "--run"))[0] == 0
    code, out, _ = cli(["archive", "list", *site.args()])
    assert "s-mid" in out and "key_points" in out and "metadata_only" in out
    dest = tmp_path / "out.json"
    assert cli(["archive", "restore", "s-old", "--out", str(dest), *site.args()])[0] == 0
    assert json.loads(dest.read_text()) == site.messages["s-old"]
    assert cli(["archive", "restore", "s-old", "--to-store", *site.args()])[0] == 0
    assert SessionStore(site.store).restore("s-old") == site.messages["s-old"]
    code, _, err = cli(["archive", "restore", "s-old", "--to-store", *site.args()])
    assert code == 1 and "already in the live store" in err


def test_ledger_rotation_and_gzip(site):
    """`--only rotate` closes an active segment holding an earlier day and gzips it; every
    record survives; the maintenance record is appended with sizes before and after."""
    n = sum(1 for _ in read_records(site.ledger))
    code, rep = cli_json(site.args("maintain", "--run", "--only", "rotate"))
    assert code == 0 and rep["counts"] == {"rotate_segment": 1, "gzip_segment": 1}
    assert not list(site.ledger.parent.glob("ledger.*.jsonl"))            # all gzipped
    for gz in site.ledger.parent.glob("ledger.*.jsonl.gz"):
        gzip.decompress(gz.read_bytes())
    recs = list(read_records(site.ledger))
    assert len(recs) == n + 1 and recs[-1]["event"] == "maintenance"
    assert recs[-1]["sizes_before"]["ledger_bytes"] > 0 and "sizes_after" in recs[-1]


def test_schedule_prints_installable_cron_and_systemd(site):
    """cron: a daily 03:17 maintenance line and a 6-hourly health line that run as
    written; systemd: two services and two timers."""
    code, out, _ = cli(["schedule", "--print", "cron", *site.args()])
    lines = [x for x in out.splitlines() if x and not x.startswith("#")]
    assert [x.split(" ", 5)[:5] for x in lines] == [["17", "3", "*", "*", "*"],
                                                     ["0", "*/6", "*", "*", "*"]]
    assert "maintain --run" in lines[0] and " health " in lines[1]
    cmd = lines[1].split(" ", 5)[5].replace("\\%", "%").replace(" --now", " --x")
    cmd = cmd.replace("--x 2025-06-01T00:00:00Z", "")
    subprocess.run(["sh", "-c", cmd], check=True, timeout=60)
    log = (site.store / ".maintenance" / "health.log").read_text()
    # run at the real time, the fleet's last compaction is long past: a warning, exit 1
    assert "no_compaction" in log and log.rstrip().endswith("health exit=1")
    code, out, _ = cli(["schedule", "--print", "systemd", *site.args()])
    files = [x.split(": ")[1] for x in out.splitlines() if x.startswith("# file:")]
    assert files == ["compactor-maintain.service", "compactor-maintain.timer",
                     "compactor-health.service", "compactor-health.timer"]
    assert "OnCalendar=*-*-* 03:17:00" in out and "OnCalendar=*-*-* 00/6:00:00" in out
