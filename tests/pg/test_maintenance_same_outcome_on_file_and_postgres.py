"""The same maintenance scenario -- the same sessions sent through the real
MessageCompactor, aged and marked alike -- run on a folder store and on a PostgreSQL store
gives the same outcome: the same sessions live, the same archive entries (tier, form,
metadata, importance, state and lossless payload hash), the same deletions."""

from __future__ import annotations

import json

import pytest

from compactor._pgstore import PostgresStore
from compactor._store import FileSessionStore
from compactor.maintenance import entries
from maint_pg import (NOW_ISO, age_files, age_pg, canon_all, cli, expected_tier, outcome,
                      plan, start_ledger, write_sessions)

AGES = {"acme/a": 1, "acme/b": 6, "acme/vip": 18, "acme/c": 22, "acme/d": 64,
        "acme/e": 120, "acme/f": 500}
MARKED = {"acme/vip"}


def _run(kind: str, root, pg_url, retention: str, p) -> tuple[dict, dict, dict, dict]:
    """Write, age and mark the sessions in a store of ``kind``, run maintenance once.
    Returns (what was sent, where each session is, entry data by id, the run's report)."""
    root.mkdir()
    if kind == "file":
        store = FileSessionStore(root / "store")
        sent = write_sessions(store, p)
        age_files(store, AGES)
        site = ["--store", str(root / "store")]
        archive = root / "store" / "archive"
    else:
        with PostgresStore(pg_url) as store:
            sent = write_sessions(store, p)
        age_pg(pg_url, AGES)
        archive = root / "archive"
        site = ["--store", pg_url, "--archive", str(archive)]
    start_ledger(root / "ledger.jsonl")
    (root / "compactor.toml").write_text(retention, encoding="utf-8")
    args = [*site, "--ledger", str(root / "ledger.jsonl"), "--now", NOW_ISO, "--config",
            str(root / "compactor.toml")]
    for sid in MARKED:
        assert cli(["archive", "mark", sid, *args])[0] == 0
    code, out, err = cli(["maintain", "--run", "--json", *args])
    assert code == 0, err
    live = FileSessionStore(root / "store") if kind == "file" else PostgresStore(pg_url)
    try:
        where = outcome(live, [archive])
    finally:
        getattr(live, "close", lambda: None)()
    data = {sid: e.data for sid, e in entries(archive).items()}
    return sent, where, data, json.loads(out)


@pytest.mark.parametrize("retention, deleted", [
    ("", set()),
    ("[maintenance.retention]\nkeep_days = 400\n", {"acme/f"}),
    ("[maintenance.retention]\ndelete_metadata_only_after_days = 100\n", {"acme/e", "acme/f"}),
], ids=["no-retention", "keep-days", "metadata-only-after"])
def test_file_and_postgres_stores_end_alike(pg_url, tmp_path, retention, deleted):
    """Both stores end with the sessions our tier rule keeps live, the same archive
    entries (compared whole) in the tiers it names, each restoring what was sent, and
    the same deletions for the retention rule set."""
    p = plan(list(AGES), steps=4)
    sent_f, where_f, data_f, rep_f = _run("file", tmp_path / "f", pg_url, retention, p)
    sent_p, where_p, data_p, rep_p = _run("pg", tmp_path / "p", pg_url, retention, p)
    assert canon_all(sent_f) == canon_all(sent_p)

    want = canon_all(sent_f)
    tiers = {sid: expected_tier(age, sid in MARKED) for sid, age in AGES.items()}
    expected = {sid: {"live": want[sid], "archived": []} if t == "full" else
                {"live": None, "archived": [(0, t, sid in MARKED, want[sid])]}
                for sid, t in tiers.items() if sid not in deleted}
    assert where_f == expected
    assert where_p == expected
    assert data_f == data_p
    assert sorted(rep_f["deleted"]) == sorted(rep_p["deleted"]) == sorted(deleted)
    assert rep_f["tiers"] == rep_p["tiers"]
