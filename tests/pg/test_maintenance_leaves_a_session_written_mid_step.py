"""A worker that appends to a session while maintenance is archiving it (after the
session was read and its entry written, before it leaves PostgreSQL) wins: the take-out
sees the session changed, the step is rolled back (no entry left), and the session stays
live with the new message; the others are archived."""

from __future__ import annotations

from compactor._pgstore import PostgresStore
from compactor._store import canonical_json, content_hash
from compactor.maintenance import Maintenance, MaintenanceConfig, entries
from compactor.maintenance._txn import Faults
from maint_pg import NOW, age_pg, canon_all, plan, start_ledger, write_sessions
from pg_support import count_rows

AGES = {"w/a": 20, "w/b": 40, "w/c": 60}


def test_an_append_between_read_and_take_out_keeps_the_session_live(pg_url, tmp_path):
    """The third intent of the run is the first session's take-out; an append made right
    then by another store instance makes the take-out refuse: that session stays live
    with all it was sent plus the new message, has no entry, and the run is ok."""
    with PostgresStore(pg_url) as store:
        sent = write_sessions(store, plan(list(AGES), steps=2))
    age_pg(pg_url, AGES)
    start_ledger(tmp_path / "ledger.jsonl")
    late = {"role": "user", "content": "one more thing: keep the receipt"}
    writer = PostgresStore(pg_url)
    seen = {"intent": 0}

    def hook(point: str) -> None:
        if point == "intent":
            seen["intent"] += 1
            if seen["intent"] == 3:       # payload, entry, then the take-out of "w/a"
                writer.append("w/a", [(len(sent["w/a"]), content_hash(late), late)])

    cfg = MaintenanceConfig(store=pg_url, ledger=tmp_path / "ledger.jsonl",
                            archive=tmp_path / "archive")
    try:
        with Maintenance(cfg, now=NOW, faults=Faults(hook)) as m:
            rep = m.run(("tiers",))
    finally:
        writer.close()
    assert rep.status == "ok", rep.error
    [a] = [x for x in rep.actions if x.target == "w/a"]
    assert "skipped: written to since the plan" in a.detail
    arch = entries(tmp_path / "archive")
    assert sorted(arch) == ["w/b", "w/c"]
    want = canon_all(sent)
    for sid in ("w/b", "w/c"):
        assert [canonical_json(m) for m in arch[sid].messages()] == want[sid]
    with PostgresStore(pg_url) as store:
        assert store.sessions() == ["w/a"]
        assert [canonical_json(m) for m in store.restore("w/a")] == (
            want["w/a"] + [canonical_json(late)])
    assert count_rows(pg_url, "compactor_taken_out") == 0
    assert not list((tmp_path / "archive").glob("*/*/w%2Fa.*"))
