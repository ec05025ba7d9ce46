"""`compactor maintain --run --store postgresql://...` on sessions the real MessageCompactor
wrote to PostgreSQL: aged sessions leave the database for their tier's archive entry,
marked ones age slower, a retention rule deletes what it names, an old empty session is
vacuumed, and an archived session restores -- to a file or back into PostgreSQL -- exactly
as it was sent."""

from __future__ import annotations

import json

from compactor._pgstore import PostgresStore
from compactor._store import canonical_json
from compactor.maintenance import entries
from maint_pg import (NOW_ISO, age_pg, canon_all, cli, expected_tier, outcome, plan,
                      start_ledger, write_sessions)
from pg_support import count_rows

#: Session id -> age in days; "team/vip" and "team/old-vip" are marked important.
AGES = {"team/a": 2, "team/b": 5, "team/vip": 12, "team/c": 25, "team/d": 50,
        "team/e": 80, "team/old-vip": 150, "team/f": 400}
MARKED = {"team/vip", "team/old-vip"}
KEEP_DAYS = 300


def _site(pg_url, tmp_path):
    """Sessions written and aged in PostgreSQL, a ledger, a config with a retention rule."""
    with PostgresStore(pg_url) as store:
        sent = write_sessions(store, plan(list(AGES)))
    age_pg(pg_url, AGES)
    with PostgresStore(pg_url) as store:
        states = {sid: store.load_state(sid) for sid in AGES}
    start_ledger(tmp_path / "ledger.jsonl")
    config = tmp_path / "compactor.toml"
    config.write_text(f"[maintenance.retention]\nkeep_days = {KEEP_DAYS}\n", encoding="utf-8")
    args = ["--store", pg_url, "--archive", str(tmp_path / "archive"), "--ledger",
            str(tmp_path / "ledger.jsonl"), "--now", NOW_ISO, "--config", str(config)]
    for sid in MARKED:
        code, out, err = cli(["archive", "mark", sid, *args])
        assert code == 0, err
    return sent, states, args


def test_a_pass_moves_aged_sessions_to_their_tiers_and_applies_retention(pg_url, tmp_path):
    """One run archives each session its age calls for (marked ones three times slower),
    leaves the young ones in PostgreSQL, deletes the one older than keep_days, records
    the run in the ledger, and leaves nothing taken out; every archive restores what was
    sent."""
    sent, states, args = _site(pg_url, tmp_path)
    assert all(states[sid]["compaction_count"] >= 1 for sid in AGES)   # states to age too
    code, out, err = cli(["maintain", "--run", "--json", *args])
    rep = json.loads(out)
    assert code == 0 and rep["status"] == "ok", (err, rep)

    tiers = {sid: expected_tier(age, sid in MARKED) for sid, age in AGES.items()}
    deleted = {sid for sid, age in AGES.items() if age > KEEP_DAYS and sid not in MARKED}
    assert deleted == {"team/f"} and tiers["team/vip"] == "full"
    with PostgresStore(pg_url) as store:
        where = outcome(store, [tmp_path / "archive"])
        assert sorted(store.sessions()) == sorted(s for s, t in tiers.items() if t == "full")
    want = canon_all(sent)
    for sid, tier in tiers.items():
        if sid in deleted:
            assert sid not in where, sid
        elif tier == "full":
            assert where[sid] == {"live": want[sid], "archived": []}, sid
        else:
            assert where[sid] == {"live": None, "archived": [
                (0, tier, sid in MARKED, want[sid])]}, sid
    assert sorted(rep["deleted"]) == sorted(deleted)
    assert rep["counts"]["archive"] == sum(t != "full" for t in tiers.values())
    assert count_rows(pg_url, "compactor_taken_out") == 0
    assert not (tmp_path / "archive" / ".maintenance" / "journal.jsonl").exists()

    code, out, err = cli(["health", "--json", *args])
    h = json.loads(out)
    assert {c["name"]: c["ok"] for c in h["checks"]} == {
        "ledger_integrity": True, "archive_integrity": True, "last_maintenance": True,
        "interrupted_maintenance": True}, h
    assert h["metrics"]["live_sessions"] == 3 and h["metrics"]["archive_entries"] == 4


def test_an_archived_session_goes_back_into_postgres_as_it_was_sent(pg_url, tmp_path):
    """`archive restore` prints an archived session as sent; `--to-store` puts it back
    into PostgreSQL with its state (version included), `sessions restore --store URL`
    reads it back as sent, and a second `--to-store` is refused with one line."""
    sent, states, args = _site(pg_url, tmp_path)
    assert cli(["maintain", "--run", *args])[0] == 0
    sid = "team/e"
    code, out, err = cli(["archive", "restore", sid, "--out", str(tmp_path / "d.json"), *args])
    assert code == 0, err
    got = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert [canonical_json(m) for m in got] == [canonical_json(m) for m in sent[sid]]

    code, out, err = cli(["archive", "restore", sid, "--to-store", *args])
    assert code == 0 and f"restored {sid}" in out, err
    code, out, err = cli(["sessions", "restore", sid, "--store", pg_url])
    assert code == 0, err
    assert [canonical_json(m) for m in json.loads(out)] == [canonical_json(m) for m in sent[sid]]
    with PostgresStore(pg_url) as store:
        assert states[sid]["compaction_count"] >= 1 and store.load_state(sid) == states[sid]
    code, out, err = cli(["archive", "restore", sid, "--to-store", *args])
    assert code == 1 and "already in the live store" in err and len(err.splitlines()) == 1
    assert entries(tmp_path / "archive")[sid].tier == expected_tier(AGES[sid], False)


def test_vacuum_removes_an_old_empty_session_from_postgres(pg_url, tmp_path):
    """A session row with no message and no state, idle for three days, is vacuumed
    (nothing left taken out); one idle for two hours stays."""
    import psycopg

    with PostgresStore(pg_url):
        pass                                   # creates the tables
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for sid, age in (("empty/old", "3 days"), ("empty/new", "2 hours")):
            conn.execute("INSERT INTO compactor_sessions (session_id, active_at, created_at) "
                         "VALUES (%s, timestamptz '2025-06-01T00:00:00Z' - %s::interval, "
                         "timestamptz '2025-06-01T00:00:00Z' - %s::interval)", (sid, age, age))
    start_ledger(tmp_path / "ledger.jsonl")
    code, out, err = cli(["maintain", "--run", "--only", "vacuum", "--json", "--store", pg_url,
                          "--archive", str(tmp_path / "archive"), "--ledger",
                          str(tmp_path / "ledger.jsonl"), "--now", NOW_ISO])
    assert code == 0 and json.loads(out)["counts"] == {"vacuum": 1}, (out, err)
    with PostgresStore(pg_url) as store:
        assert store.sessions() == ["empty/new"]
    assert count_rows(pg_url, "compactor_taken_out") == 0
