"""``PostgresStore``: the session archive and state in PostgreSQL, shared by many workers
on many hosts (psycopg 3 with a ``psycopg_pool`` connection pool; the ``postgres`` extra).

The same contract as :class:`compactor._store.FileSessionStore` (see
:class:`~compactor._store.SessionStoreProtocol`), on three tables (``docs/postgres.md``)::

    compactor_sessions (session_id PK, tip, state, version, marked, created_at, active_at)
    compactor_nodes    (session_id, chain PK together; position, hash, prev, message, seq)
    compactor_taken_out (key PK, session_id, payload, state, version, marked, created_at,
                         active_at, taken_at)
    compactor_schema_migrations (version PK, name, applied_at)

* An archive node is one row, keyed by ``(session_id, chain id)`` and written with
  ``INSERT ... ON CONFLICT DO NOTHING``: appends are idempotent across processes and
  hosts. ``message`` holds the message's canonical JSON *text* (not ``jsonb``, which
  reorders keys and rewrites numbers), so :meth:`PostgresStore.restore` gives back exactly
  the bytes :func:`~compactor._store.canonical_json` gave when it was archived.
* ``tip`` is the current branch's last node, moved as the file store moves it: to the
  call's last node, never back to one of its own ancestors (a writer that lags behind on
  the same branch does not undo a newer one). An append runs in one transaction holding
  the session's row lock (``SELECT ... FOR UPDATE``), so two writers of one session apply
  their appends one after the other.
* ``state`` is the session state's JSON text, ``version`` its optimistic version:
  ``save_state(expected_version=N)`` is ``UPDATE ... WHERE version = N`` and raises
  :class:`~compactor._store.StateConflictError` when no row matched.
* :meth:`PostgresStore.lock` is ``pg_advisory_lock`` on a 64-bit hash of the schema and
  the session id, held on one pooled connection for the life of the ``with`` block
  (reentrant in the holding thread). A worker killed while holding it loses its
  connection, and the server releases the lock.
* The schema is versioned: :data:`MIGRATIONS` are applied in order, each in the
  transaction that records it in ``compactor_schema_migrations``, under a transaction-level
  advisory lock (many workers starting at once apply each migration once). The store
  applies them when it opens (``migrate=False``: it only checks the version), and
  ``compactor store migrate --store postgresql://...`` applies them on demand.
* Maintenance (``compactor maintain --store postgresql://...``) uses the protocol's
  maintenance support: :meth:`PostgresStore.take_out` moves a session, in one transaction
  under its row lock and only if it is unchanged, into ``compactor_taken_out`` (its
  export, state, mark and times), where it stays until maintenance's journaled step
  commits (:meth:`PostgresStore.finish_step_op` drops it) or is put back whole
  (:meth:`PostgresStore.undo_step_op`: a rollback, or the next run's recovery after a
  kill); :meth:`PostgresStore.run_lock` keeps maintenance runs on every host apart.

Every method is synchronous and thread-safe (the compactor calls the store in threads).
Server errors after the store opened (the server went away, a statement failed) are
``psycopg.Error`` subclasses and propagate.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, ContextManager, Iterator, Mapping, Sequence

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ._errors import ConfigError
from ._store import (STATE_SCHEMA_VERSION, ArchiveNode, FileSessionStore, SessionChangedError,
                     SessionStat, StateConflictError, StepJournal, _as_nodes, _Index,
                     _index_line, canonical_json, encode_session_id, export_digest)

#: The schema migrations, in order: ``(version, name, SQL)``. A released migration is
#: never edited; a change of the schema is a new entry.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "sessions and archive nodes", """
        CREATE TABLE compactor_sessions (
            session_id  text PRIMARY KEY,
            tip         text NOT NULL DEFAULT '',
            state       text,
            version     bigint NOT NULL DEFAULT 0,
            marked      boolean NOT NULL DEFAULT false,
            created_at  timestamptz NOT NULL DEFAULT now(),
            active_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE compactor_nodes (
            session_id  text NOT NULL
                        REFERENCES compactor_sessions (session_id) ON DELETE CASCADE,
            chain       text NOT NULL,
            position    integer NOT NULL CHECK (position >= 0),
            hash        text NOT NULL,
            prev        text NOT NULL,
            message     text NOT NULL,
            seq         bigint GENERATED ALWAYS AS IDENTITY,
            PRIMARY KEY (session_id, chain)
        );
        CREATE INDEX compactor_nodes_in_order ON compactor_nodes (session_id, seq);
    """),
    (2, "sessions by last activity (maintenance tiers)", """
        CREATE INDEX compactor_sessions_active ON compactor_sessions (active_at);
    """),
    (3, "sessions taken out by maintenance, until its step commits", """
        CREATE TABLE compactor_taken_out (
            key         text PRIMARY KEY,
            session_id  text NOT NULL,
            payload     bytea NOT NULL,
            state       text,
            version     bigint NOT NULL,
            marked      boolean NOT NULL,
            created_at  timestamptz NOT NULL,
            active_at   timestamptz NOT NULL,
            taken_at    timestamptz NOT NULL DEFAULT now()
        );
    """),
)

#: The newest schema version this module knows.
SCHEMA_VERSION = MIGRATIONS[-1][0]
#: Seconds a new connection may take (the pool's open and each reconnect).
CONNECT_TIMEOUT_S = 10.0
#: Polling interval bounds of :meth:`PostgresStore.lock_within`, in seconds.
_POLL_MIN_S, _POLL_MAX_S = 0.005, 0.1
#: The advisory lock name of :meth:`PostgresStore.run_lock` (NUL: never a session id).
_RUN_LOCK = "\0maintenance run"
#: Journal intents of this store (:meth:`PostgresStore.undo_step_op`).
_TAKE_OUT, _PUT_IN = "pg_take_out", "pg_put_in"

_MIGRATIONS_DDL = """
    CREATE TABLE IF NOT EXISTS compactor_schema_migrations (
        version     integer PRIMARY KEY,
        name        text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )"""

_BRANCH_SQL = """
    WITH RECURSIVE b (chain, prev, depth) AS (
        SELECT n.chain, n.prev, 0 FROM compactor_sessions s
          JOIN compactor_nodes n ON n.session_id = s.session_id AND n.chain = s.tip
         WHERE s.session_id = %(s)s
        UNION ALL
        SELECT n.chain, n.prev, b.depth + 1 FROM b
          JOIN compactor_nodes n ON n.session_id = %(s)s AND n.chain = b.prev
    )
    SELECT n.{col}, b.prev FROM b
      JOIN compactor_nodes n ON n.session_id = %(s)s AND n.chain = b.chain
     ORDER BY b.depth DESC"""

_IS_ANCESTOR_SQL = """
    WITH RECURSIVE up (chain, prev) AS (
        SELECT chain, prev FROM compactor_nodes WHERE session_id = %(s)s AND chain = %(tip)s
        UNION ALL
        SELECT n.chain, n.prev FROM up
          JOIN compactor_nodes n ON n.session_id = %(s)s AND n.chain = up.prev
    )
    SELECT 1 FROM up WHERE chain = %(a)s LIMIT 1"""


def display_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", url)


def lock_key(schema: str, session_id: str) -> int:
    """The ``pg_advisory_lock`` key of a session: the first 8 bytes of
    ``sha256("compactor\\0<schema>\\0<session id>")`` as a signed 64-bit integer
    (collisions, at about 2**-64 per pair, only make two sessions share a lock)."""
    d = hashlib.sha256(f"compactor\0{schema}\0{session_id}".encode("utf-8")).digest()
    return int.from_bytes(d[:8], "big", signed=True)


def apply_migrations(conn: psycopg.Connection[Any], *, target: int | None = None,
                     where: str = "the store") -> list[int]:
    """Apply the :data:`MIGRATIONS` the database lacks, up to ``target`` (default: all),
    each in its own transaction together with its ``compactor_schema_migrations`` row,
    under a transaction-level advisory lock (concurrent callers apply each one once).
    ``conn`` must be in autocommit mode. Returns the versions applied now, in order.

    Raises:
        ConfigError: the database holds a schema newer than this module knows.
        psycopg.Error: a statement failed (that migration is rolled back).
    """
    applied: list[int] = []
    for version, name, sql in MIGRATIONS:
        if target is not None and version > target:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)",
                         (lock_key(_current_schema(conn), "schema migrations"),))
            conn.execute(_MIGRATIONS_DDL)
            newest = conn.execute("SELECT max(version) FROM compactor_schema_migrations"
                                  ).fetchone()[0] or 0  # type: ignore[index]
            if newest > SCHEMA_VERSION:
                raise _too_new(where, newest)
            if conn.execute("SELECT 1 FROM compactor_schema_migrations WHERE version = %s",
                            (version,)).fetchone():
                continue
            conn.execute(sql)  # type: ignore[arg-type]
            conn.execute("INSERT INTO compactor_schema_migrations (version, name) "
                         "VALUES (%s, %s)", (version, name))
            applied.append(version)
    return applied


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The newest migration applied in ``conn``'s schema (0: none, or no table yet)."""
    row = conn.execute("SELECT to_regclass('compactor_schema_migrations') IS NOT NULL"
                       ).fetchone()
    if not row or not row[0]:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM "
                            "compactor_schema_migrations").fetchone()[0])  # type: ignore[index]


def _conn_kwargs(schema: str | None, connect_timeout_s: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"autocommit": True,
                              "connect_timeout": max(1, round(connect_timeout_s))}
    if schema is not None:
        kwargs["options"] = f"-c search_path={_ident(schema)}"
    return kwargs


@contextmanager
def connect(url: str, *, schema: str | None = None,
            connect_timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[psycopg.Connection[Any]]:
    """One autocommit connection to ``url`` (tables in ``schema`` when given), closed on
    exit; connection failures and a URL libpq cannot read become one-line
    :class:`ConfigError` s naming the URL (without its password) and the fix.

    Raises:
        ConfigError: see above.
    """
    where = display_url(url)
    try:
        conn = psycopg.connect(url, **_conn_kwargs(schema, connect_timeout_s))
    except psycopg.OperationalError as e:
        raise ConfigError(f"{where}: cannot connect ({_first_line(e)}); fix: start the "
                          "server, or correct the URL (postgresql://USER@HOST:PORT/DBNAME)",
                          field="store") from None
    except psycopg.ProgrammingError as e:
        raise ConfigError(f"{where}: {_first_line(e)}; fix: check the URL and its options",
                          field="store") from None
    with conn:
        yield conn


def migrate_url(url: str, *, schema: str | None = None,
                target: int | None = None) -> tuple[list[int], int]:
    """Apply the missing :data:`MIGRATIONS` (up to ``target``) to the database ``url``
    names (what ``compactor store migrate`` runs). Returns ``(versions applied now, the
    schema version after)``.

    Raises:
        ConfigError: the server cannot be reached, or its schema is newer than this module.
    """
    with connect(url, schema=schema) as conn:
        applied = apply_migrations(conn, target=target, where=display_url(url))
        return applied, schema_version(conn)


def _current_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    if not row or row[0] is None:
        raise ConfigError("the store's search_path names no existing schema; fix: create "
                          "the schema first, or drop the search_path option", field="store")
    return str(row[0])


def _too_new(where: str, newest: int) -> ConfigError:
    return ConfigError(f"{where}: schema version {newest} is newer than this compactor knows "
                       f"({SCHEMA_VERSION}); fix: upgrade agent-context-compactor",
                       field="store")


class PostgresStore:
    """Sessions in PostgreSQL (see the module docs). Implements
    :class:`~compactor._store.SessionStoreProtocol` with the file store's semantics.

    Args:
        url: a libpq URL, ``postgresql://user[:password]@host[:port]/dbname[?...]``
            (or any libpq connection string).
        schema: tables in this schema (it must exist; default: the URL's
            ``search_path``, normally ``public``); it replaces the URL's ``options``.
        migrate: apply missing migrations on open (False: only check that the schema is
            at :data:`SCHEMA_VERSION`).
        min_size / max_size: connections the pool keeps open / may open (each
            :meth:`lock` holder takes one for as long as it holds the lock).
        connect_timeout_s: seconds a connection may take to open.

    Raises:
        ConfigError: the server cannot be reached, refuses the login, the schema does
            not exist, is older than this module (with ``migrate=False``) or newer.
    """

    def __init__(self, url: str, *, schema: str | None = None, migrate: bool = True,
                 min_size: int = 1, max_size: int = 8,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.url = url
        self.location = display_url(url)
        if not 1 <= min_size <= max_size:
            raise ConfigError("PostgresStore needs 1 <= min_size <= max_size; fix: e.g. "
                              "min_size=1, max_size=8", field="max_size")
        kwargs = _conn_kwargs(schema, connect_timeout_s)
        with connect(url, schema=schema, connect_timeout_s=connect_timeout_s) as conn:
            self.schema = _current_schema(conn)
            if migrate:
                apply_migrations(conn, where=self.location)
            else:
                have = schema_version(conn)
                if have > SCHEMA_VERSION:
                    raise _too_new(self.location, have)
                if have < SCHEMA_VERSION:
                    raise ConfigError(
                        f"{self.location}: schema version {have}, this compactor needs "
                        f"{SCHEMA_VERSION}; fix: compactor store migrate --store URL",
                        field="store")
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url, min_size=min_size, max_size=max_size, kwargs=kwargs, open=False,
            name="compactor-store", timeout=max(30.0, connect_timeout_s),
            # a connection the server dropped (a restart, a failover, an idle timeout) is
            # replaced when it is handed out, instead of failing the caller's operation
            check=ConnectionPool.check_connection)
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            self._pool.close()
            raise ConfigError(f"{self.location}: the pool could not open {min_size} "
                              f"connection(s) within {connect_timeout_s:g} s; fix: check the "
                              "server's max_connections, or pass a smaller min_size",
                              field="store") from None
        self._held = threading.local()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the pool's connections (locks still held are released by the server)."""
        self._pool.close()

    def __enter__(self) -> "PostgresStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r}, schema={self.schema!r})"

    def migrate(self, *, target: int | None = None) -> list[int]:
        """Apply the missing :data:`MIGRATIONS` (up to ``target``); returns the versions
        applied now. See :func:`apply_migrations`."""
        with self._pool.connection() as conn:
            return apply_migrations(conn, target=target, where=self.location)

    def schema_version(self) -> int:
        """The newest migration applied to this store's schema."""
        with self._pool.connection() as conn:
            return schema_version(conn)

    # ------------------------------------------------------------------ locks
    @contextmanager
    def lock(self, session_id: str) -> Iterator[None]:
        """Hold the session's cross-process lock (``pg_advisory_lock``) for the ``with``
        block: one holder at a time across threads, processes and hosts; reentrant in the
        holding thread (which is the thread that must leave the block). Waits as long as
        another holder keeps it.

        Raises:
            ConfigError: an id that cannot name a session.
        """
        self._acquire(session_id, None)
        try:
            yield
        finally:
            self._release(session_id)

    @contextmanager
    def lock_within(self, session_id: str, timeout_s: float) -> Iterator[None]:
        """:meth:`lock`, waiting at most ``timeout_s`` seconds (``pg_try_advisory_lock``
        polled with a back-off from 5 ms to 100 ms).

        Raises:
            TimeoutError: another holder kept it for ``timeout_s`` seconds.
        """
        self._acquire(session_id, timeout_s)
        try:
            yield
        finally:
            self._release(session_id)

    def _acquire(self, session_id: str, timeout_s: float | None) -> None:
        if session_id != _RUN_LOCK:
            encode_session_id(session_id)
        held: dict[str, list[Any]] = self._held.__dict__.setdefault("by_session", {})
        h = held.get(session_id)
        if h is not None:
            h[1] += 1
            return
        key = lock_key(self.schema, session_id)
        conn = self._pool.getconn()
        try:
            if timeout_s is None:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            else:
                deadline = time.monotonic() + max(0.0, timeout_s)
                pause = _POLL_MIN_S
                while not conn.execute("SELECT pg_try_advisory_lock(%s)",
                                       (key,)).fetchone()[0]:  # type: ignore[index]
                    left = deadline - time.monotonic()
                    if left <= 0:
                        what = ("the maintenance run lock is held by another run"
                                if session_id == _RUN_LOCK else
                                f"session {session_id!r} is locked by another writer")
                        raise TimeoutError(f"{what} (waited {timeout_s:g} s)")
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, _POLL_MAX_S)
        except BaseException:
            self._pool.putconn(conn)
            raise
        held[session_id] = [conn, 1]

    def _release(self, session_id: str) -> None:
        held: dict[str, list[Any]] = self._held.__dict__["by_session"]
        h = held[session_id]
        h[1] -= 1
        if h[1]:
            return
        del held[session_id]
        conn = h[0]
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(self.schema, session_id),))
        finally:
            self._pool.putconn(conn)   # a broken connection is discarded (lock gone with it)

    # ------------------------------------------------------------------ archive
    def append(self, session_id: str, nodes: Sequence[ArchiveNode], *,
               tip: str | None = None) -> int:
        """Archive ``nodes`` (or ``(position, hash, message)`` triples, chained linearly
        onto the current branch), idempotent by chain id, and move the current tip to
        ``tip`` (default: the last node's chain id) as the file store does: always when a
        node was new, else only when ``tip`` is not the current tip or one of its
        ancestors. One transaction under the session's row lock. Returns how many nodes
        were new.

        Raises:
            ConfigError: an id that cannot name a session.
            TypeError: a message is not JSON-serialisable (nothing is written).
            ValueError: a node's ``prev`` is neither ``""`` nor an archived or earlier
                node (a broken chain: a bug of the caller; nothing is written).
        """
        if not nodes and tip is None:
            return 0
        encode_session_id(session_id)
        with self._pool.connection() as conn, conn.transaction():
            if all(isinstance(n, ArchiveNode) for n in nodes):
                chains = [n.chain for n in nodes]
                cur_tip, known = self._lock_row(conn, session_id, list(
                    {*chains, *(n.prev for n in nodes if n.prev)}))
            else:   # (position, hash, message) triples: chained onto the current branch
                cur_tip, _ = self._lock_row(conn, session_id, [])
                nodes = _as_nodes(self._index(conn, session_id, cur_tip), nodes)
                chains = [n.chain for n in nodes]
                cur_tip, known = self._lock_row(conn, session_id, list(
                    {*chains, *(n.prev for n in nodes if n.prev)}))
            want_tip = tip if tip is not None else nodes[-1].chain
            batch: set[str] = set()
            rows: list[tuple[str, int, str, str, str]] = []
            for n, c in zip(nodes, chains):
                if c in known or c in batch:
                    continue
                if n.prev and n.prev not in known and n.prev not in batch:
                    raise ValueError(f"node at position {n.position} follows {n.prev[:19]}..., "
                                     "which is not archived")
                rows.append((c, int(n.position), n.hash, n.prev, canonical_json(n.message)))
                batch.add(c)
            implied = rows[-1][0] if rows else cur_tip
            new_tip = implied
            if want_tip and implied != want_tip and (rows or not conn.execute(
                    _IS_ANCESTOR_SQL, {"s": session_id, "tip": cur_tip, "a": want_tip}
            ).fetchone()):
                new_tip = want_tip
            if rows:
                conn.execute(
                    "INSERT INTO compactor_nodes (session_id, chain, position, hash, prev, "
                    "message) SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::text[], "
                    "%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                    (session_id, *map(list, zip(*rows))))
            if rows or new_tip != cur_tip:
                conn.execute("UPDATE compactor_sessions SET tip = %s, active_at = now() "
                             "WHERE session_id = %s", (new_tip, session_id))
            return len(rows)

    def _lock_row(self, conn: psycopg.Connection[Any], session_id: str,
                  chains: list[str]) -> tuple[str, set[str]]:
        """Create the session's row if missing and lock it for this transaction; returns
        the current tip and which of ``chains`` the archive holds."""
        sql = ("SELECT s.tip, ARRAY(SELECT n.chain FROM compactor_nodes n WHERE n.session_id "
               "= s.session_id AND n.chain = ANY(%s)) FROM compactor_sessions s "
               "WHERE s.session_id = %s FOR UPDATE")
        row = conn.execute(sql, (chains, session_id)).fetchone()
        if row is None:
            conn.execute("INSERT INTO compactor_sessions (session_id) VALUES (%s) "
                         "ON CONFLICT DO NOTHING", (session_id,))
            row = conn.execute(sql, (chains, session_id)).fetchone()
        return str(row[0]), set(row[1])  # type: ignore[index]

    def _index(self, conn: psycopg.Connection[Any], session_id: str, tip: str) -> _Index:
        """The session's nodes as the file store's index (for triples, a rare call)."""
        recs = {c: {"ordinal": p, "hash": h, "prev": prev} for c, p, h, prev in conn.execute(
            "SELECT chain, position, hash, prev FROM compactor_nodes WHERE session_id = %s "
            "ORDER BY seq", (session_id,))}
        return _Index(recs, tip, 0, 0, 0)

    def _branch(self, session_id: str, col: str) -> list[str]:
        with self._pool.connection() as conn:
            rows = conn.execute(_BRANCH_SQL.format(col=col), {"s": session_id}).fetchall()
        if rows and rows[0][1] != "":
            raise ValueError(f"session {session_id!r}: archive chain broken at "
                             f"{rows[0][1][:19]}...")
        return [r[0] for r in rows]

    def restore(self, session_id: str) -> list[dict[str, Any]]:
        """The agent's original history on the current branch, in order: byte-identical
        (canonical JSON) to what the agent sent. One statement (one snapshot).

        Raises:
            ConfigError: the store holds nothing of the session (field ``session_id``).
        """
        if not self.exists(session_id):
            raise ConfigError(f"no archive for session {session_id!r} in {self.location}; "
                              "fix: check the session id (compactor sessions list)",
                              field="session_id")
        return [json.loads(t) for t in self._branch(session_id, "message")]

    def branch_hashes(self, session_id: str) -> list[str]:
        """Content hashes of the current branch, in order ([] for an unknown session)."""
        return self._branch(session_id, "hash")

    def branches(self, session_id: str) -> list[dict[str, Any]]:
        """Every branch: ``{"tip", "length", "fork", "current"}``, oldest first (as
        :meth:`FileSessionStore.branches <compactor._store.FileSessionStore.branches>`)."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT tip FROM compactor_sessions WHERE session_id = %s",
                               (session_id,)).fetchone()
            nodes = {c: (p, prev) for c, p, prev in conn.execute(
                "SELECT chain, position, prev FROM compactor_nodes WHERE session_id = %s "
                "ORDER BY seq", (session_id,))}
        tip = row[0] if row else ""
        parents = {prev for _, prev in nodes.values()}
        siblings: dict[str, int] = {}
        for _, prev in nodes.values():
            siblings[prev] = siblings.get(prev, 0) + 1
        out = []
        for c in (c for c in nodes if c not in parents):
            length, fork, k = 0, 0, c
            while k:
                length += 1
                pos, prev = nodes[k]
                if siblings[prev] > 1:     # the deepest place it shares a parent
                    fork = max(fork, pos)
                k = prev
            out.append({"tip": c, "length": length, "fork": fork, "current": c == tip})
        return out

    def recall(self, session_id: str, query: str | None = None, *, start: int | None = None,
               end: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Archived messages of the current branch matching ``query`` (all words,
        case-insensitive) and/or with ``start <= ordinal < end``; at most ``limit``,
        oldest first. Each item: ``{"ordinal", "role", "text", "message"}``."""
        # the file store's search, which reads the session through ``self.restore`` only
        return FileSessionStore.recall(self, session_id, query,  # type: ignore[arg-type]
                                       start=start, end=end, limit=limit)

    # ------------------------------------------------------------------ state
    def save_state(self, session_id: str, state: Mapping[str, Any], *,
                   expected_version: int | None = None) -> int:
        """Save the state (JSON text; ``version`` is the row's, one more than the saved
        one); with ``expected_version``, only if the saved version is that one (0: never
        saved). Returns the new version.

        Raises:
            StateConflictError: ``expected_version`` is given and another version is saved.
            ConfigError: an id that cannot name a session.
        """
        encode_session_id(session_id)
        body = json.dumps({**state, "schema_version": STATE_SCHEMA_VERSION,
                           "session_id": session_id}, ensure_ascii=False, sort_keys=True)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO compactor_sessions (session_id) VALUES (%s) "
                         "ON CONFLICT DO NOTHING", (session_id,))
            row = conn.execute(
                "UPDATE compactor_sessions SET state = %s, version = version + 1, "
                "active_at = now() WHERE session_id = %s AND (%s::bigint IS NULL OR "
                "version = %s::bigint) RETURNING version",
                (body, session_id, expected_version, expected_version)).fetchone()
            if row is None:
                found = conn.execute("SELECT version FROM compactor_sessions WHERE "
                                     "session_id = %s", (session_id,)).fetchone()
                raise StateConflictError(session_id, expected_version,
                                         int(found[0]) if found else 0)
            return int(row[0])

    def load_state(self, session_id: str) -> dict[str, Any] | None:
        """The saved state (with its ``version``), or None."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT state, version FROM compactor_sessions WHERE "
                               "session_id = %s", (session_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return {**json.loads(row[0]), "version": int(row[1])}

    # ------------------------------------------------------------------ listing
    def exists(self, session_id: str) -> bool:
        """Whether the store holds a row of the session."""
        with self._pool.connection() as conn:
            return conn.execute("SELECT 1 FROM compactor_sessions WHERE session_id = %s",
                                (session_id,)).fetchone() is not None

    def sessions(self) -> list[str]:
        """Session ids in the store, sorted (by code point, as the file store sorts)."""
        with self._pool.connection() as conn:
            return sorted(r[0] for r in conn.execute("SELECT session_id FROM "
                                                     "compactor_sessions"))

    def delete(self, session_id: str) -> None:
        """Remove a session (its nodes and state), under the session's lock."""
        with self.lock(session_id), self._pool.connection() as conn:
            conn.execute("DELETE FROM compactor_sessions WHERE session_id = %s", (session_id,))

    def info(self, session_id: str) -> dict[str, Any]:
        """Summary facts of a session, as the file store's ``info``: ``session_id``,
        ``compaction_count``, ``last_compaction_at``, ``messages_archived`` (current
        branch), ``branches``, ``archived_ranges``, ``archive_bytes`` (bytes of the
        archived canonical JSON), ``archive_segments`` (1 when it has nodes: one table),
        ``summary``."""
        state = self.load_state(session_id) or {}
        with self._pool.connection() as conn:
            n, size = conn.execute(
                "SELECT count(*), coalesce(sum(octet_length(message)), 0) FROM "
                "compactor_nodes WHERE session_id = %s", (session_id,)).fetchone()  # type: ignore[misc]
        return {"session_id": session_id,
                "compaction_count": state.get("compaction_count", 0),
                "last_compaction_at": state.get("last_compaction_at"),
                "messages_archived": len(self.branch_hashes(session_id)),
                "branches": len(self.branches(session_id)),
                "archived_ranges": state.get("archived_ranges", []),
                "archive_bytes": int(size), "archive_segments": 1 if n else 0,
                "summary": state.get("summary")}

    # ---- maintenance support ---------------------------------------------------------
    def stat(self, session_id: str) -> SessionStat | None:
        """Facts of a session (None when the store has no row of it): ``bytes`` of its
        archived canonical JSON, hashes and state; ``last_active`` the later of its last
        write (append, state save or import; not a mark) and the state's
        ``last_compaction_at``; ``first_seen`` when its row was created; the mark;
        ``empty`` (no node, no state)."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT s.created_at, s.active_at, s.marked, s.state, "
                "(SELECT count(*) FROM compactor_nodes n WHERE n.session_id = s.session_id), "
                "(SELECT coalesce(sum(octet_length(n.message) + octet_length(n.hash) "
                "+ octet_length(n.prev) + octet_length(n.chain)), 0) FROM compactor_nodes n "
                "WHERE n.session_id = s.session_id) FROM compactor_sessions s "
                "WHERE s.session_id = %s", (session_id,)).fetchone()
        if row is None:
            return None
        created, active, marked, state, n, size = row
        last = active
        if state is not None:
            at = json.loads(state).get("last_compaction_at")
            try:
                when = datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else None
            except ValueError:
                when = None
            if when is not None:
                last = max(last, when if when.tzinfo else when.replace(tzinfo=timezone.utc))
        return SessionStat(session_id=session_id,
                           bytes=int(size) + (len(state.encode("utf-8")) if state else 0),
                           last_active=last.astimezone(timezone.utc),
                           first_seen=(created if n else last).astimezone(timezone.utc),
                           marked=bool(marked), empty=not n and state is None)

    def export(self, session_id: str) -> tuple[bytes, dict[str, Any] | None]:
        """``(payload, state)``: the archive as the file store's lines (canonical JSON
        node lines in the order they were archived, then a ``{"tip": ...}`` line when
        the current tip is not the last node) -- what
        :func:`~compactor._store.restore_from_records` reads -- and the state. One
        snapshot (a repeatable-read transaction)."""
        with self._pool.connection() as conn:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute("SELECT tip, state, version FROM compactor_sessions "
                                   "WHERE session_id = %s", (session_id,)).fetchone()
                return _export(conn, session_id, row)

    def import_(self, session_id: str, payload: bytes,
                state: Mapping[str, Any] | None) -> None:
        """Put an exported session back (any export: this store's or the file store's
        lines, store format 1 included) into a session that holds nothing; the state is
        saved as given (its ``version`` kept). One transaction.

        Raises:
            FileExistsError: the session holds nodes or a state already.
            ValueError: the payload does not end with a complete line, or a line is not
                JSON.
            ConfigError: an id that cannot name a session.
        """
        encode_session_id(session_id)
        tip, rows = _payload_rows(payload)
        with self._pool.connection() as conn, conn.transaction():
            self._lock_row(conn, session_id, [])
            if _holds_something(conn, session_id):
                raise FileExistsError(f"session {session_id!r} is already in "
                                      f"{self.location}; fix: restore it from there")
            _insert_nodes(conn, session_id, rows)
            body = None if state is None else json.dumps(
                {k: v for k, v in state.items() if k != "version"}, ensure_ascii=False,
                sort_keys=True)
            conn.execute("UPDATE compactor_sessions SET tip = %s, state = %s, version = %s, "
                         "active_at = now() WHERE session_id = %s",
                         (tip, body, int((state or {}).get("version", 0)), session_id))

    def mark(self, session_id: str, marked: bool = True) -> bool:
        """Mark (or unmark) a session important; returns whether the mark changed (a mark
        is not activity: ``last_active`` stays).

        Raises:
            ConfigError: the store holds nothing of the session (field ``session_id``).
        """
        with self._pool.connection() as conn:
            row = conn.execute(
                "WITH old AS (SELECT session_id, marked FROM compactor_sessions WHERE "
                "session_id = %s FOR UPDATE) UPDATE compactor_sessions s SET marked = %s "
                "FROM old WHERE s.session_id = old.session_id RETURNING old.marked",
                (session_id, marked)).fetchone()
        if row is None:
            raise ConfigError(f"no session {session_id!r} in {self.location}; fix: check the "
                              "id with `compactor sessions list`", field="session_id")
        return bool(row[0]) != marked

    def usage(self) -> tuple[int, int]:
        """``(bytes, sessions)``: bytes the store's tables and indexes take in the
        database (``pg_total_relation_size``), and how many sessions it holds."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT pg_total_relation_size('compactor_sessions') + "
                "pg_total_relation_size('compactor_nodes') + "
                "pg_total_relation_size('compactor_taken_out'), "
                "(SELECT count(*) FROM compactor_sessions)").fetchone()
        return int(row[0]), int(row[1])  # type: ignore[index]

    def where(self, session_id: str) -> str:
        """``<URL without password> session '<id>'``, for messages."""
        return f"{self.location} session {session_id!r}"

    def run_lock(self, timeout_s: float) -> ContextManager[None]:
        """The store's maintenance run lock: :meth:`lock_within` on a name no session id
        can have (a ``pg_advisory_lock`` held on one pooled connection), so one
        maintenance run at a time works on this schema, from any host.

        Raises:
            TimeoutError: another run held it for ``timeout_s`` seconds.
        """
        return self.lock_within(_RUN_LOCK, timeout_s)

    def take_out(self, session_id: str, step: StepJournal, *, expect: str) -> None:
        """Remove a session through ``step``: journal the intent ``pg_take_out`` (with a
        fresh key), then in one transaction holding the session's row lock -- so no
        append or state save runs meanwhile -- check that its export still has the
        digest ``expect``, copy it (export, state, version, mark, times) into
        ``compactor_taken_out`` under the key and delete it. Until the step commits it
        can be put back exactly as it was (:meth:`undo_step_op`).

        Raises:
            SessionChangedError: the session is gone or its digest is another (nothing
                was changed).
        """
        key = uuid.uuid4().hex

        def act() -> None:
            with self._pool.connection() as conn, conn.transaction():
                row = conn.execute(
                    "SELECT tip, state, version, marked, created_at, active_at FROM "
                    "compactor_sessions WHERE session_id = %s FOR UPDATE",
                    (session_id,)).fetchone()
                if row is None:
                    raise SessionChangedError(session_id)
                payload, state = _export(conn, session_id, row[:3])
                if export_digest(payload, state) != expect:
                    raise SessionChangedError(session_id)
                conn.execute(
                    "INSERT INTO compactor_taken_out (key, session_id, payload, state, "
                    "version, marked, created_at, active_at) VALUES (%s, %s, %s, %s, %s, %s, "
                    "%s, %s)", (key, session_id, payload, row[1], row[2], row[3], row[4],
                                row[5]))
                conn.execute("DELETE FROM compactor_sessions WHERE session_id = %s",
                             (session_id,))
        step.store_op(_TAKE_OUT, {"session_id": session_id, "key": key,
                                  "store": self.location}, act)

    def put_in(self, session_id: str, payload: bytes, state: Mapping[str, Any] | None,
               step: StepJournal) -> None:
        """:meth:`import_` through ``step``: journal the intent ``pg_put_in`` with the
        digest the imported session will export with, then import it (one
        transaction); undoing it deletes the session while it still has that digest.

        Raises:
            FileExistsError: the session holds nodes or a state already (nothing done).
            ValueError, ConfigError: see :meth:`import_`.
        """
        encode_session_id(session_id)
        tip, rows = _payload_rows(payload)
        lines = [_node_line(h, msg, pos, prev) for _c, pos, h, prev, msg in rows]
        if tip != (rows[-1][0] if rows else ""):
            lines.append(canonical_json({"tip": tip}) + "\n")
        loaded = None if state is None else {
            **json.loads(json.dumps({k: v for k, v in state.items() if k != "version"},
                                    ensure_ascii=False)),
            "version": int(state.get("version", 0))}
        digest = export_digest("".join(lines).encode("utf-8"), loaded)
        step.store_op(_PUT_IN, {"session_id": session_id, "digest": digest,
                                "store": self.location},
                      lambda: self.import_(session_id, payload, state))

    def undo_step_op(self, intent: Mapping[str, Any]) -> str | None:
        """Undo an intent of :meth:`take_out` (put the session back exactly as it was,
        from ``compactor_taken_out``, unless the session is live again: then its
        taken-out copy stays, and the message says so) or of :meth:`put_in` (delete the
        session while it still has the imported digest). Idempotent: an intent whose
        action never ran changes nothing. Returns a conflict message, or None."""
        op, sid = intent.get("op"), str(intent.get("session_id"))
        with self._pool.connection() as conn, conn.transaction():
            if op == _TAKE_OUT:
                row = conn.execute(
                    "SELECT payload, state, version, marked, created_at, active_at FROM "
                    "compactor_taken_out WHERE key = %s FOR UPDATE",
                    (intent.get("key"),)).fetchone()
                if row is None:
                    return None
                self._lock_row(conn, sid, [])
                if _holds_something(conn, sid):
                    return (f"session {sid!r} is live again in {self.location}; its earlier "
                            f"copy stays in compactor_taken_out (key {intent.get('key')})")
                tip, rows = _payload_rows(bytes(row[0]))
                _insert_nodes(conn, sid, rows)
                conn.execute("UPDATE compactor_sessions SET tip = %s, state = %s, version = %s, "
                             "marked = %s, created_at = %s, active_at = %s WHERE session_id = %s",
                             (tip, *row[1:], sid))
                conn.execute("DELETE FROM compactor_taken_out WHERE key = %s",
                             (intent.get("key"),))
                return None
            if op == _PUT_IN:
                row = conn.execute("SELECT tip, state, version FROM compactor_sessions WHERE "
                                   "session_id = %s FOR UPDATE", (sid,)).fetchone()
                if row is None:
                    return None
                if export_digest(*_export(conn, sid, row)) != intent.get("digest"):
                    return (f"session {sid!r} was written to after it was put back; left in "
                            f"{self.location}")
                conn.execute("DELETE FROM compactor_sessions WHERE session_id = %s", (sid,))
                return None
        return f"journal intent {op!r} is not a PostgreSQL store's; left as it is"

    def finish_step_op(self, intent: Mapping[str, Any]) -> None:
        """After the step committed: drop a :meth:`take_out` copy (idempotent)."""
        if intent.get("op") == _TAKE_OUT:
            with self._pool.connection() as conn:
                conn.execute("DELETE FROM compactor_taken_out WHERE key = %s",
                             (intent.get("key"),))

    def taken_out(self) -> list[str]:
        """Session ids held in ``compactor_taken_out`` (by a maintenance step not yet
        committed or undone: a run in progress, or one killed whose host has not run
        again), sorted."""
        with self._pool.connection() as conn:
            return sorted(r[0] for r in conn.execute(
                "SELECT session_id FROM compactor_taken_out"))


def _node_line(h: str, msg: str, pos: int, prev: str) -> str:
    """One archive node line as the file store writes it (canonical JSON; ``msg`` is the
    message's canonical JSON text)."""
    enc = _ENC.encode
    return f'{{"hash":{enc(h)},"message":{msg},"ordinal":{int(pos)},"prev":{enc(prev)}}}\n'


_ENC = json.JSONEncoder(ensure_ascii=False)


def _export(conn: psycopg.Connection[Any], session_id: str,
            row: Sequence[Any] | None) -> tuple[bytes, dict[str, Any] | None]:
    """The export of a session whose ``(tip, state, version)`` row is ``row`` (None:
    no such session), read in ``conn``'s current transaction."""
    if row is None:
        return b"", None
    out: list[str] = []
    last = ""
    for c, pos, h, prev, msg in conn.execute(
            "SELECT chain, position, hash, prev, message FROM compactor_nodes "
            "WHERE session_id = %s ORDER BY seq", (session_id,)):
        out.append(_node_line(h, msg, pos, prev))
        last = c
    tip, state, version = row
    if tip != last:
        out.append(canonical_json({"tip": tip}) + "\n")
    loaded = None if state is None else {**json.loads(state), "version": int(version)}
    return "".join(out).encode("utf-8"), loaded


def _payload_rows(payload: bytes) -> tuple[str, list[tuple[str, int, str, str, str]]]:
    """``(tip, rows)`` of an export: its current tip and one ``(chain, position, hash,
    prev, message text)`` per node, in archive order.

    Raises:
        ValueError: the payload does not end with a complete line, or a line is not JSON.
    """
    if payload and not payload.endswith(b"\n"):
        raise ValueError("payload ends inside a line; export gives complete lines only")
    ix = _Index({}, "", 0, 0, 0)
    for line in payload.decode("utf-8").splitlines():
        _index_line(ix, json.loads(line))
    return ix.tip, [(c, int(r["ordinal"]), str(r["hash"]), str(r["prev"]),
                     canonical_json(r["message"])) for c, r in ix.records.items()]


def _holds_something(conn: psycopg.Connection[Any], session_id: str) -> bool:
    """Whether the session's row has a state or nodes (call holding its row lock)."""
    row = conn.execute(
        "SELECT state IS NOT NULL OR EXISTS (SELECT 1 FROM compactor_nodes WHERE "
        "session_id = %s) FROM compactor_sessions WHERE session_id = %s",
        (session_id, session_id)).fetchone()
    return bool(row and row[0])


def _insert_nodes(conn: psycopg.Connection[Any], session_id: str,
                  rows: list[tuple[str, int, str, str, str]]) -> None:
    """Insert node rows in their order (so ``seq`` keeps the archive order)."""
    if rows:
        conn.execute(
            "INSERT INTO compactor_nodes (session_id, chain, position, hash, prev, "
            "message) SELECT %s, c, p, h, v, m FROM unnest(%s::text[], %s::int[], "
            "%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS u(c, p, h, v, m, i) "
            "ORDER BY i",
            (session_id, *map(list, zip(*rows))))


def _ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (for the search_path option).

    Raises:
        ConfigError: an empty name or one holding NUL.
    """
    if not name or "\0" in name:
        raise ConfigError(f"schema {name!r} cannot name a schema; fix: a non-empty name",
                          field="schema")
    return '"' + name.replace('"', '""') + '"'


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return " ".join(text[0].split()) if text else type(e).__name__


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore", "apply_migrations", "connect",
           "display_url", "lock_key", "migrate_url", "schema_version"]
