"""Maintenance works on a PostgreSQL store through the protocol: a session exported from
either store kind imports into the other and restores the same, with its state version;
marks, stats, usage and deletion behave as the file store's."""

from __future__ import annotations

import pytest

from compactor import ConfigError
from compactor._store import FileSessionStore, SessionStoreProtocol
from pg_support import canon, linear_nodes

MSGS = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i} ü " * 4}
        for i in range(8)]


def test_export_import_round_trips_between_file_and_postgres_stores(pg_store, tmp_path):
    """A file-store session with a fork, exported and imported into PostgreSQL, restores
    the same branch with the same branches and state; exported back into a new file store
    it restores the same again."""
    files = FileSessionStore(tmp_path / "a")
    nodes = linear_nodes(MSGS)
    files.append("s", nodes)
    files.append("s", linear_nodes([{"role": "user", "content": "forked"}], 3, nodes[2].chain))
    files.save_state("s", {"compaction_count": 2})
    files.save_state("s", {"compaction_count": 3})
    payload, state = files.export("s")
    pg_store.import_("s", payload, state)
    assert canon(pg_store.restore("s")) == canon(files.restore("s"))
    assert pg_store.branches("s") == files.branches("s")
    assert pg_store.load_state("s") == files.load_state("s")
    back = FileSessionStore(tmp_path / "b")
    back.import_("s", *pg_store.export("s"))
    assert canon(back.restore("s")) == canon(files.restore("s"))
    assert back.branches("s") == files.branches("s")
    with pytest.raises(FileExistsError):
        pg_store.import_("s", payload, state)


def test_stat_mark_usage_and_delete(pg_store):
    """stat reports bytes, emptiness and the mark; marking is not activity; usage counts
    the sessions; delete removes the session and a mark on a missing one is a ConfigError."""
    assert pg_store.stat("s") is None
    pg_store.append("s", linear_nodes(MSGS))
    st = pg_store.stat("s")
    assert not st.empty and not st.marked
    assert st.bytes >= sum(len(m["content"].encode()) for m in MSGS)
    assert pg_store.mark("s") is True and pg_store.mark("s") is False
    st2 = pg_store.stat("s")
    assert st2.marked and st2.last_active == st.last_active
    assert pg_store.mark("s", False) is True
    assert pg_store.usage()[1] == 1 and pg_store.usage()[0] > 0
    assert pg_store.sessions() == ["s"]
    pg_store.delete("s")
    assert pg_store.sessions() == [] and not pg_store.exists("s")
    with pytest.raises(ConfigError, match="no session"):
        pg_store.mark("s")
    with pytest.raises(ConfigError, match="no archive"):
        pg_store.restore("s")


def test_the_store_offers_every_method_of_the_protocol(pg_store):
    """PostgresStore has every method SessionStoreProtocol names (a method added to the
    protocol fails this until the PostgreSQL store has it too)."""
    names = [n for n in dir(SessionStoreProtocol) if not n.startswith("_")]
    assert "append" in names and "lock_within" in names
    assert [n for n in names if not callable(getattr(pg_store, n, None))] == []
    assert isinstance(pg_store, SessionStoreProtocol)
