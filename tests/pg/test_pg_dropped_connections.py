"""Connections the server drops (a restart, a failover, an idle timeout) cost the store
nothing: the pool replaces them when it hands them out, so the next operations succeed."""

from __future__ import annotations

import uuid

import psycopg

from compactor._pgstore import PostgresStore
from pg_support import canon, linear_nodes


def test_operations_after_the_server_dropped_every_connection_succeed(pg_url):
    """After pg_terminate_backend of all the store's pooled connections, append, restore
    and save_state succeed at once and see what was there before."""
    name = "t-" + uuid.uuid4().hex[:12]
    url = f"{pg_url}&application_name={name}"
    msgs = [{"role": "user", "content": f"m{i}"} for i in range(6)]
    nodes = linear_nodes(msgs)
    with PostgresStore(url, min_size=3, max_size=3) as store:
        store.append("s", nodes[:3])
        with store.lock("s"), store.lock("t"):     # make the pool open its 3 connections
            store.save_state("s", {"n": 1}, expected_version=0)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s", (name,)).fetchone()[0]
        assert killed == 3
        assert store.append("s", nodes) == 3
        assert canon(store.restore("s")) == canon(msgs)
        assert store.save_state("s", {"n": 2}, expected_version=1) == 2
