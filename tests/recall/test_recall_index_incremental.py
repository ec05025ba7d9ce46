"""The recall index is updated incrementally from the archive: each update indexes only
what was archived since the last one, and never twice."""

from __future__ import annotations

import sqlite3
import stat

from compactor._format import Format
from compactor._recall import INDEX_FILE, RecallIndex

from conftest import archive, fact_history


class CountingStore:
    """The real store, counting how often the archive is read."""

    def __init__(self, store):
        self._store, self.reads = store, 0

    def records(self, session_id):
        self.reads += 1
        return self._store.records(session_id)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _rows(path, session_id):
    db = sqlite3.connect(path)
    try:
        nodes = db.execute("select count(*) from node where session=?", (session_id,)).fetchone()[0]
        fts = db.execute("select fts from meta where session=?", (session_id,)).fetchone()[0]
        fts_rows = db.execute(f"select count(*) from {fts}").fetchone()[0]
        return nodes, fts_rows
    finally:
        db.close()


def test_second_update_indexes_only_the_new_ordinals(store, index):
    """40 archived messages are indexed once; after 12 more are archived the next update
    indexes exactly 12 (SQLite rows: 52 nodes, 52 full-text rows); a third indexes none."""
    h = fact_history(40)
    archive(store, "s", h[:40])
    assert index.update(store, "s") == 40
    archive(store, "s", h[40:52], start=40)
    assert index.update(store, "s") == 12
    assert index.update(store, "s") == 0
    assert index.indexed("s") == (52, 52)
    assert _rows(index.path, "s") == (52, 52)


def test_a_known_tip_skips_reading_the_archive(store, index):
    """Given the chain ids the session state knows, an index already at that tip does not
    read the archive at all; a longer branch does read it."""
    from compactor._session import chains_of
    h = fact_history(10)
    archive(store, "s", h)
    counting = CountingStore(store)
    index.update(counting, "s")
    assert counting.reads == 1
    chains = chains_of(store.branch_hashes("s"))
    assert index.update(counting, "s", chains=chains) == 0
    assert counting.reads == 1
    archive(store, "s", [{"role": "user", "content": "one more"}], start=len(h))
    assert index.update(counting, "s", chains=chains_of(store.branch_hashes("s"))) == 1
    assert counting.reads == 2


def test_a_rewrite_indexes_from_the_fork_only(store, index):
    """A branch that forks at ordinal 20 of 30 indexes the 10 new nodes; the old branch's
    nodes stay in the index (the archive keeps them) but only the new branch is searched."""
    from compactor._store import ArchiveNode, chain_id, content_hash
    h = fact_history(9)[:30]
    archive(store, "s", h)
    assert index.update(store, "s") == 30
    h2 = h[:20] + [{"role": "user" if k % 2 == 0 else "assistant",
                    "content": f"forked turn {k} quokka"} for k in range(10)]
    prev, nodes = "", []
    for i, m in enumerate(h2):
        hh = content_hash(m)
        nodes.append(ArchiveNode(i, hh, prev, m))
        prev = chain_id(prev, hh)
    store.append("s", nodes)
    assert index.update(store, "s") == 10
    assert index.indexed("s") == (30, 40)
    assert [o for o, _ in index.search("s", "quokka")] == list(range(20, 30))
    # "green" is in every routine answer (14, 16, ... 28 on the old branch): only those
    # before the fork are on the current branch
    assert sorted(o for o, _ in index.search("s", "green")) == [14, 16, 18]


def test_index_file_is_private(store):
    """The index beside the store is created 0600 (its WAL files too)."""
    archive(store, "s", fact_history(3))
    ix = RecallIndex.for_store(store)
    try:
        ix.update(store, "s", fmt=Format.ANTHROPIC)
        for f in store.root.iterdir():
            if f.name.startswith(INDEX_FILE):
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
        assert (store.root / INDEX_FILE).exists()
    finally:
        ix.close()


def test_nodes_just_archived_are_indexed_without_reading_the_archive(store, index):
    """The driver hands over the nodes it has just archived: the index takes them without
    reading the archive and ends equal to an index built from the archive (same branch,
    same units, same ranking); nodes that do not continue the indexed tip make it read."""
    from compactor._store import ArchiveNode, chain_id, content_hash
    h = fact_history(30)
    archive(store, "s", h[:11])                 # ends inside the config tool pair (10, 11)
    counting = CountingStore(store)
    index.update(counting, "s")
    prev = store.branch_hashes("s")
    tip = ""
    for hh in prev:
        tip = chain_id(tip, hh)
    nodes = []
    for i, m in enumerate(h[11:], 11):
        hh = content_hash(m)
        nodes.append(ArchiveNode(i, hh, tip, m))
        tip = chain_id(tip, hh)
    store.append("s", nodes)
    reads = counting.reads
    assert index.add(counting, "s", nodes) == len(h) - 11
    assert counting.reads == reads
    fresh = RecallIndex(None)
    try:
        fresh.update(store, "s")
        assert index.branch_hashes("s") == fresh.branch_hashes("s")
        # one unit: the assistant's text (9), its tool_use (10) and the result (11)
        assert [o for o, _ in index.span("s", 11)] == [9, 10, 11]
        assert index.span("s", 11) == fresh.span("s", 11)
        for q in ("merchant id", "staging region", "build 17 green"):
            assert index.search("s", q) == fresh.search("s", q)
    finally:
        fresh.close()
    assert index.add(counting, "s", nodes[3:5]) == 0    # not at the tip: reads, no change
    assert counting.reads == reads + 1
