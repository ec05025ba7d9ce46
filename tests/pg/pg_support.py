"""What the PostgreSQL store tests share: a fresh schema per test in the database
``$COMPACTOR_TEST_PG`` names (``.ci/run`` starts a server and sets it), and helpers.

Without ``$COMPACTOR_TEST_PG`` the tests that need a server skip, saying how to get one.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Iterator, Sequence

import pytest

from builders import linear_nodes
from compactor._store import canonical_json

PG_ENV = "COMPACTOR_TEST_PG"
SKIP_REASON = ("no PostgreSQL for tests/pg: run .ci/run, or set COMPACTOR_TEST_PG="
               "postgresql://USER@HOST:PORT/DBNAME (a database the tests may create "
               "schemas in)")


def with_schema(url: str, schema: str) -> str:
    """``url`` with libpq's ``options=-csearch_path=<schema>``: every client of the URL
    (this process, workers, the CLI) uses that schema's tables."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of the test database whose ``search_path`` is a schema created for this test
    (dropped after it). Skips when ``$COMPACTOR_TEST_PG`` is not set."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(SKIP_REASON)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Any]:
    """A :class:`PostgresStore` on the test's schema (closed after the test)."""
    from compactor._pgstore import PostgresStore

    store = PostgresStore(pg_url)
    try:
        yield store
    finally:
        store.close()




def canon(msgs: Sequence[Any]) -> list[str]:
    """Each message's canonical JSON (what "byte-identical" compares)."""
    return [canonical_json(m) for m in msgs]


def count_rows(url: str, table: str) -> int:
    """Rows of a store table, counted with a plain psycopg connection (not the store)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


__all__ = ["PG_ENV", "SKIP_REASON", "canon", "count_rows", "linear_nodes", "pg_store", "pg_url",
           "with_schema"]
