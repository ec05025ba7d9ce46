"""Archived sessions are never lost or overwritten: a damaged archive skips that one
session instead of failing every run, an entry naming another session's payload cannot
delete it, `archive add` and `restore --to-store` check under the session lock, and every
`archive` command exits 1 with one line for an unknown id."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from filelock import FileLock

from compactor import content_hash
from fleet import NOW, small_store
from maintenance_support import cli, cli_json, site_args
from compactor._store import SessionStore
from compactor.ledger import read_records
from compactor.maintenance import Maintenance, MaintenanceConfig, entries
from compactor.maintenance._archive import ArchiveError

LATER = NOW + timedelta(days=15)


def _damage(e, how: str) -> None:
    if how == "missing":
        e.payload_path.unlink()
    elif how == "truncated":
        e.payload_path.write_bytes(e.payload_path.read_bytes()[:20])
    else:  # hash mismatch: the payload is intact, the recorded hash is not (same size)
        data = json.loads(e.path.read_text())
        data["lossless"]["sha256"] = "sha256:" + "0" * 64
        e.path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")


@pytest.mark.parametrize("how", ["missing", "truncated", "hash"])
def test_damaged_payload_is_skipped_and_reported_not_fatal(tmp_path, how):
    """A damaged payload of one archived session due for re-tiering no longer fails the
    run: that session is left byte-for-byte as it is, the other sessions are re-tiered,
    retention and vacuum still run, the CLI and the ledger record name the skipped session,
    the run exits 1 (warning) and `health` stays critical."""
    msgs = small_store(tmp_path, {"s-bad": 20, "s-ok": 25, "s-old": 100})
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0
    arch = tmp_path / "store" / "archive"
    bad = entries(arch)["s-bad"]
    _damage(bad, how)
    before = {p: p.read_bytes() for p in (bad.path, bad.payload_path) if p.exists()}
    empty = bad.path.parent / "empty.json.part"
    empty.write_bytes(b"")
    conf = tmp_path / "c.toml"
    conf.write_text("[maintenance.retention]\ndelete_metadata_only_after_days = 110\n")

    code, out, err = cli(site_args(tmp_path, "maintain", "--run", "--config", str(conf), now=LATER))
    assert code == 1, (out, err)
    assert "skipped s-bad" in out and "warning" in out
    after = {p: p.read_bytes() for p in (bad.path, bad.payload_path) if p.exists()}
    assert after == before                                  # untouched, not deleted
    now_arch = entries(arch)
    assert now_arch["s-ok"].tier == "brief_summary"         # the others went on
    assert now_arch["s-ok"].messages() == msgs["s-ok"]
    assert "s-old" not in now_arch                          # retention ran
    assert not empty.exists()                               # vacuum ran
    rec = [r for r in read_records(tmp_path / "ledger" / "ledger.jsonl")
           if r["event"] == "maintenance"][-1]
    assert rec["status"] == "warning" and rec["error"] is None
    assert [s["session_id"] for s in rec["skipped"]] == ["s-bad"]
    assert rec["skipped"][0]["reason"] and rec["deleted"] == ["s-old"]
    assert not (tmp_path / "store" / ".maintenance" / "journal.jsonl").exists()

    hcode, h = cli_json(site_args(tmp_path, "health", now=LATER))
    assert hcode == 2 and any("s-bad" in a["message"] for a in h["alerts"])
    # and again: the next run skips it again (it never fails), json names it too
    code2, rep2 = cli_json(site_args(tmp_path, "maintain", "--run", now=LATER))
    assert code2 == 1 and rep2["status"] == "warning"
    assert [s["session_id"] for s in rep2["skipped"]] == ["s-bad"]
    assert {p: p.read_bytes() for p in (bad.path, bad.payload_path) if p.exists()} == before


def test_entry_naming_another_payload_cannot_delete_it(tmp_path):
    """An archive entry whose `lossless.file` names another session's payload is refused
    (health reports it), so retention cannot delete that other session's data."""
    small_store(tmp_path, {"s-a": 200, "s-b": 201})
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0
    arch = entries(tmp_path / "store" / "archive")
    a, b = arch["s-a"], arch["s-b"]
    assert a.path.parent == b.path.parent
    assert cli(["archive", "mark", "s-b", *site_args(tmp_path)])[0] == 0
    data = json.loads(a.path.read_text())
    data["lossless"]["file"] = b.payload_path.name
    a.path.write_text(json.dumps(data))
    conf = tmp_path / "c.toml"
    conf.write_text("[maintenance.retention]\ndelete_metadata_only_after_days = 150\n")
    cli(site_args(tmp_path, "maintain", "--run", "--config", str(conf)))
    assert entries(tmp_path / "store" / "archive")["s-b"].messages()   # still restorable
    code, h = cli_json(site_args(tmp_path, "health"))
    assert code == 2 and any("archive_integrity" in x["message"] for x in h["alerts"])


def test_archive_add_refuses_a_session_being_written_to(tmp_path, monkeypatch):
    """`archive add` takes the session's store lock (after the maintenance lock, like a
    run) and refuses, with one line and exit 1, a session whose writer holds it."""
    import compactor.maintenance._maintain as mm

    monkeypatch.setattr(mm, "SESSION_LOCK_TIMEOUT_S", 0.2)
    msgs = small_store(tmp_path, {"s-busy": 1})
    d = SessionStore(tmp_path / "store").session_dir("s-busy")
    with FileLock(str(d / ".lock")):
        code, out, err = cli(site_args(tmp_path, "archive", "add", "s-busy"))
    assert code == 1 and "being written to" in err and len(err.strip().splitlines()) == 1
    assert "s-busy" not in entries(tmp_path / "store" / "archive")
    assert SessionStore(tmp_path / "store").restore("s-busy") == msgs["s-busy"]
    assert cli(site_args(tmp_path, "archive", "add", "s-busy"))[0] == 0    # free: archived
    assert entries(tmp_path / "store" / "archive")["s-busy"].messages() == msgs["s-busy"]


def test_archive_add_refuses_a_session_written_to_since_it_was_read(tmp_path, monkeypatch):
    """A write that lands between reading the session and taking its lock is caught under
    the lock: refused, exit 1, nothing archived."""
    import compactor.maintenance._maintain as mm

    small_store(tmp_path, {"s-w": 1})
    st = SessionStore(tmp_path / "store")
    real = mm.Maintenance._locked

    def locked(self, timeout_s):
        extra = {"role": "user", "content": "one more thing"}
        st.append("s-w", [(2, content_hash(extra), extra)])
        return real(self, timeout_s)
    monkeypatch.setattr(mm.Maintenance, "_locked", locked)
    code, _, err = cli(site_args(tmp_path, "archive", "add", "s-w"))
    assert code == 1 and "being written to" in err
    assert "s-w" not in entries(tmp_path / "store" / "archive")
    assert len(st.restore("s-w")) == 3


def test_restore_to_store_checks_under_the_lock(tmp_path, monkeypatch):
    """A session that appears in the live store while `restore --to-store` waits for the
    lock is not overwritten: the check runs under the lock."""
    import compactor.maintenance._maintain as mm

    small_store(tmp_path, {"s-r": 200})
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0
    d = SessionStore(tmp_path / "store").session_dir("s-r")
    assert not d.exists() or not any(p.name != ".lock" for p in d.iterdir())
    real = mm.Maintenance._locked

    def locked(self, timeout_s):        # a writer wins the race just before we get the lock
        d.mkdir(parents=True, exist_ok=True)
        (d / "archive.jsonl").write_bytes(b"writer's line\n")
        return real(self, timeout_s)
    monkeypatch.setattr(mm.Maintenance, "_locked", locked)
    m = Maintenance(MaintenanceConfig(store=tmp_path / "store",
                                      ledger=tmp_path / "ledger" / "ledger.jsonl"), now=NOW)
    with pytest.raises(ArchiveError, match="already in the live store"):
        mm.restore_to_store(m, "s-r")
    assert (d / "archive.jsonl").read_bytes() == b"writer's line\n"


def test_archive_show_and_mark_of_an_unknown_id_exit_1(tmp_path):
    """Like `archive restore`, `archive show` and `mark` of an unknown id print one line
    and exit 1 (the documented code for a missing archive)."""
    small_store(tmp_path, {"s-a": 200})
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0
    for cmd in (["archive", "show", "nope"], ["archive", "mark", "nope"],
                ["archive", "restore", "nope"], ["archive", "add", "nope"]):
        code, out, err = cli(site_args(tmp_path, *cmd))
        assert code == 1 and "nope" in err and len(err.strip().splitlines()) == 1, cmd
    assert cli(site_args(tmp_path, "archive", "show", "s-a"))[0] == 0
