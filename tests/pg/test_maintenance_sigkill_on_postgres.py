"""SIGKILL of `compactor maintain --run --store postgresql://...` mid-pass (a real child
process, killed at a named progress point or at one drawn at random): every session is
still whole in PostgreSQL or in a hash-checked archive entry, health calls the run
interrupted, and the next run recovers and finishes with each session in one place."""

from __future__ import annotations

import json
import random
import signal

import pytest

from compactor._pgstore import PostgresStore
from compactor._store import canonical_json
from compactor.maintenance import ArchiveError, entries
from compactor.maintenance._txn import read_journal
from maint_pg import (NOW_ISO, age_pg, canon_all, cli, expected_tier, plan, run_child,
                      start_ledger, write_sessions)
from pg_support import count_rows

AGES = {"run/a": 2, "run/b": 12, "run/c": 40, "run/d": 100, "run/e": 20, "run/f": 4}
#: An archive step's progress points: payload (intent, write, action), entry (intent,
#: write, action), the store's take-out (intent, action), then the commit.
POINTS_PER_ARCHIVE = 9


def _consistent(pg_url, archive, sent) -> dict[str, str]:
    """Each session restores as sent from PostgreSQL or from its archive entry (payload
    hash-checked); none is both live and taken out. Returns id -> "live"/"archived"/"both"."""
    want = canon_all(sent)
    arch = entries(archive)
    where = {}
    with PostgresStore(pg_url) as store:
        live = set(store.sessions())
        taken = set(store.taken_out())
        assert not live & taken, live & taken
        for sid in AGES:
            places = []
            if sid in live:
                assert [canonical_json(m) for m in store.restore(sid)] == want[sid], sid
                places.append("live")
            if sid in arch:
                try:
                    got = [canonical_json(m) for m in arch[sid].messages()]
                except ArchiveError as e:    # pragma: no cover - reported by the assert
                    raise AssertionError(f"{sid}: {e}") from e
                assert got == want[sid], sid
                places.append("archived")
            assert places, f"{sid} lost (taken out: {sid in taken})"
            where[sid] = "both" if len(places) == 2 else places[0]
    return where


@pytest.mark.parametrize("fault", [
    "intent:kill:3",     # the take-out intent journaled, its transaction not run
    "action:kill:3",     # the session moved to compactor_taken_out, the step not committed
    "commit:kill:1",     # the step committed, its taken-out copy not dropped yet
    "write:kill:5",      # halfway through the second session's payload file
    "random",            # a point drawn (seeded) from the whole pass
])
def test_sigkill_mid_pass_leaves_every_session_whole_and_the_next_run_finishes(
        pg_url, tmp_path, fault):
    """The child dies by SIGKILL where the journal says; every session restores as sent
    from PostgreSQL or its archive; health exits 2 (interrupted); the next run recovers,
    archives each aged session once, and leaves nothing taken out."""
    with PostgresStore(pg_url) as store:
        sent = write_sessions(store, plan(list(AGES), steps=3))
    age_pg(pg_url, AGES)
    ledger, archive = tmp_path / "ledger.jsonl", tmp_path / "archive"
    start_ledger(ledger)
    args = ["--store", pg_url, "--archive", str(archive), "--ledger", str(ledger), "--now",
            NOW_ISO]
    aged = sum(expected_tier(a, False) != "full" for a in AGES.values())
    if fault == "random":
        fault = f"any:kill:{random.Random(15).randint(1, aged * POINTS_PER_ARCHIVE - 1)}"

    trace = tmp_path / "points.txt"
    p = run_child(["maintain", "--run", *args], fault=fault, trace=trace)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr)
    point, _, nth = fault.split(":")
    passed = trace.read_text().split()
    assert passed[-1] == point or point == "any", passed[-4:]
    journal = read_journal(archive / ".maintenance" / "journal.jsonl")
    kinds = [r.get("kind") for r in journal]
    assert kinds.count("intent") == passed.count("intent")
    assert kinds.count("commit") == passed.count("commit")
    if fault == "action:kill:3":
        assert journal[-1]["op"] == "pg_take_out"
        assert count_rows(pg_url, "compactor_taken_out") == 1
    if fault == "commit:kill:1":
        assert journal[-1]["kind"] == "commit" and count_rows(pg_url, "compactor_taken_out") == 1

    _consistent(pg_url, archive, sent)
    code, out, err = cli(["health", "--json", *args])
    assert code == 2 and "interrupted_maintenance" in out, (out, err)

    code, out, err = cli(["maintain", "--run", "--json", *args])
    rep = json.loads(out)
    assert code == 0 and rep["status"] == "ok" and rep["recovered"]["run_id"], (rep, err)
    where = _consistent(pg_url, archive, sent)
    assert where == {sid: "live" if expected_tier(a, False) == "full" else "archived"
                     for sid, a in AGES.items()}
    tiers = {sid: e.tier for sid, e in entries(archive).items()}
    assert tiers == {sid: expected_tier(a, False) for sid, a in AGES.items()
                     if expected_tier(a, False) != "full"}
    assert count_rows(pg_url, "compactor_taken_out") == 0
    assert cli(["health", *args])[0] == 0
