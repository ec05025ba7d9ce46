"""A run that fails with something other than an OSError (a bug, a bad value) in the
middle of a step rolls that step back, exits 1 and still records the failure."""

from __future__ import annotations

from datetime import timedelta

from fleet import NOW, small_store, write_ledger
from maintenance_support import cli_json, site_args
from compactor._store import SessionStore
from compactor.ledger import read_records
from compactor.maintenance import entries


def test_unexpected_error_is_rolled_back_and_recorded(tmp_path, monkeypatch):
    """A failure that is not an OSError (a bug, a bad value) in the middle of the tiers
    task rolls the step back, fails the run with exit 1 and still writes the ledger
    record; every session stays restorable."""
    import compactor.maintenance._maintain as mm

    msgs = small_store(tmp_path, {"s-a": 20, "s-b": 40, "s-c": 60})
    write_ledger(tmp_path / "ledger" / "ledger.jsonl", last=NOW - timedelta(hours=1))
    calls = [0]
    real = mm.tier_form

    def flaky(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            raise ValueError("summarizer returned garbage")
        return real(*a, **k)
    monkeypatch.setattr(mm, "tier_form", flaky)
    code, rep = cli_json(site_args(tmp_path, "maintain", "--run"))
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
