"""The PostgreSQL store keeps the file store's archive contract: the same appends give the
same current branch, branches, tips, counts and restores (the file store is the oracle),
byte-identical in canonical JSON, and nothing is archived twice."""

from __future__ import annotations

import json
import random

import pytest

from compactor._pgstore import PostgresStore
from compactor._store import (ArchiveNode, FileSessionStore, chain_id, content_hash,
                              restore_from_records)
from pg_support import canon, count_rows, linear_nodes

#: Messages whose canonical JSON is easy to get wrong: key order, non-ASCII, escapes,
#: numbers jsonb would rewrite, and a control character PostgreSQL text cannot hold raw.
TRICKY = [
    {"role": "user", "content": "héllo wörld — 日本語 🎉", "z": 1, "a": 2},
    {"role": "assistant", "content": [{"type": "text", "text": "NUL here: \u0000 and \u2028"}]},
    {"role": "user", "content": "numbers", "n": [1.0, 0.1, 1e100, -0.0, 12345678901234567890]},
    {"role": "assistant", "content": [{"type": "text", "text": "\"quoted\" \\ back\\slash"}],
     "nested": {"b": {"d": 1, "c": [3, {"y": None, "x": True}]}}},
]


def msg(i: int) -> dict:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " * 3}


def test_restore_is_byte_identical_and_export_matches_the_file_store(pg_store, tmp_path):
    """Messages with tricky JSON restore byte-identical (canonical JSON), and the export of
    a linear session is the file store's export, byte for byte."""
    files = FileSessionStore(tmp_path)
    nodes = linear_nodes(TRICKY)
    assert pg_store.append("s", nodes) == files.append("s", nodes) == len(TRICKY)
    assert canon(pg_store.restore("s")) == canon(TRICKY)
    assert pg_store.export("s")[0] == files.export("s")[0]
    assert pg_store.branch_hashes("s") == [content_hash(m) for m in TRICKY]


def test_append_is_idempotent_across_stores_and_processes_rows(pg_url):
    """Appending the same nodes through two store instances archives each message once:
    the second append reports 0 new, the table holds one row per message."""
    nodes = linear_nodes([msg(i) for i in range(10)])
    with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
        assert a.append("s", nodes[:6]) == 6
        assert b.append("s", nodes) == 4
        assert a.append("s", nodes) == 0
        assert b.append("s", nodes[:3]) == 0     # a lagging writer: the tip stays
        assert canon(a.restore("s")) == canon([msg(i) for i in range(10)])
    assert count_rows(pg_url, "compactor_nodes") == 10


def test_broken_chain_is_rejected_and_nothing_is_written(pg_store, pg_url):
    """A node following a chain id the archive does not hold raises ValueError and writes
    no row (the append is one transaction)."""
    good = linear_nodes([msg(0), msg(1)])
    orphan = ArchiveNode(5, content_hash(msg(5)), "sha256:" + "0" * 64, msg(5))
    with pytest.raises(ValueError, match="not archived"):
        pg_store.append("s", [*good, orphan])
    assert count_rows(pg_url, "compactor_nodes") == 0
    assert pg_store.branch_hashes("s") == []


def _apply(stores, op, *args, **kw):
    results = [getattr(s, op)(*args, **kw) for s in stores]
    assert results[0] == results[1], (op, results)
    return results[0]


def _same(files: FileSessionStore, pg: PostgresStore, sid: str) -> None:
    assert canon(pg.restore(sid)) == canon(files.restore(sid))
    assert pg.branch_hashes(sid) == files.branch_hashes(sid)
    assert pg.branches(sid) == files.branches(sid)
    # the PostgreSQL export, read as archive lines, restores the same branch
    lines = [json.loads(x) for x in pg.export(sid)[0].decode().splitlines()]
    assert canon(restore_from_records(lines)) == canon(files.restore(sid))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_forks_resends_and_tip_moves_match_the_file_store(pg_store, tmp_path, seed):
    """A seeded random mix of appends that grow the branch, fork it, re-send an old prefix
    (a lagging writer), move the tip to another branch, or pass (position, hash, message)
    triples leaves both stores with the same branch, branches and new-node counts."""
    rng = random.Random(seed)
    files = FileSessionStore(tmp_path)
    stores = (files, pg_store)
    counter = iter(range(10_000))
    _apply(stores, "append", "s", linear_nodes([msg(next(counter)) for _ in range(4)]))
    for _ in range(60):
        branch = files.restore("s")
        hashes = files.branch_hashes("s")
        chains = [chain_id("", hashes[0])]
        for h in hashes[1:]:
            chains.append(chain_id(chains[-1], h))
        op = rng.choice(["grow", "grow", "fork", "resend", "switch", "triples"])
        if op == "grow":
            new = [msg(next(counter)) for _ in range(rng.randint(1, 4))]
            _apply(stores, "append", "s", linear_nodes(new, len(branch), chains[-1]))
        elif op == "fork":
            p = rng.randrange(len(branch))
            new = [msg(next(counter)) for _ in range(rng.randint(1, 3))]
            _apply(stores, "append", "s", linear_nodes(new, p, chains[p - 1] if p else ""))
        elif op == "resend":
            j = rng.randint(1, len(branch))
            _apply(stores, "append", "s", linear_nodes(branch[:j]))
        elif op == "switch":
            other = [b["tip"] for b in files.branches("s") if not b["current"]]
            if other:
                _apply(stores, "append", "s", [], tip=rng.choice(other))
        else:
            new = [msg(next(counter)) for _ in range(rng.randint(1, 3))]
            triples = [(len(branch) + k, content_hash(m), m) for k, m in enumerate(new)]
            _apply(stores, "append", "s", triples)
        _same(files, pg_store, "s")
    assert len(files.branches("s")) > 1            # the mix did fork
    info_f, info_p = files.info("s"), pg_store.info("s")
    for k in ("messages_archived", "branches", "compaction_count"):
        assert info_p[k] == info_f[k]


def test_recall_tool_reads_the_same_messages_as_from_the_file_store(pg_store, tmp_path):
    """The recall tool over a PostgreSQL store answers exactly as over a file store holding
    the same archive (word query, ordinal range, limit)."""
    from compactor import run_recall_tool

    files = FileSessionStore(tmp_path)
    msgs = [{"role": "user", "content": f"order A-{i} costs {100 + i} EUR"} for i in range(12)]
    nodes = linear_nodes(msgs)
    files.append("s", nodes)
    pg_store.append("s", nodes)
    for args in ({"query": "order A-3"}, {"start": 4, "end": 7}, {"query": "EUR", "limit": 3}):
        got = run_recall_tool(pg_store, "s", args)
        assert got == run_recall_tool(files, "s", args)
    assert "[3] user: order A-3 costs 103 EUR" in run_recall_tool(pg_store, "s", {"query": "A-3"})
