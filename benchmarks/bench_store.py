"""Issue 15: archive appends per second and p99 append latency of the PostgreSQL session
store vs the file store, side by side in one run.

Each store gets the same work: ``--sessions`` sessions, each a chain of messages appended
``--batch`` at a time (what ``MessageCompactor`` hands ``store.append`` when an agent adds
a few messages per call), by ``W`` writer threads for each ``W`` in ``--writers`` (each
thread owns its own sessions; every store method is called from threads, as the compactor
calls it). The messages are tau-bench airline messages (``../shared/data``; synthetic ones
of similar size when it is absent). Every append is timed (wall clock); the table prints
appends/s (all threads, total appends / wall time) and the p50 and p99 latency of one
append in milliseconds. The file store runs with ``fsync`` off (its default) and on; the
PostgreSQL store commits each append, as configured on the server (its
``synchronous_commit`` and ``fsync`` are printed with the results: they decide what a
commit waits for) and once more with ``synchronous_commit=off`` for the session
("async": a commit does not wait for the WAL flush).

    .venv/bin/python benchmarks/bench_store.py --pg postgresql://USER@HOST:PORT/DB \\
        [--appends 2000] [--batch 2] [--sessions 20] [--writers 1,4]

``--pg`` defaults to ``$COMPACTOR_TEST_PG``; the tables go in a schema created for the run
and dropped after it. Needs the ``postgres`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "tau_bench_gpt4o_airline.anthropic.jsonl"

from compactor._store import ArchiveNode, FileSessionStore, chain_id, content_hash  # noqa: E402


def messages(n: int) -> list[dict[str, Any]]:
    """``n`` messages: tau-bench airline ones in order (repeated with a counter so each is
    distinct), or synthetic ones of a few hundred bytes."""
    base: list[dict[str, Any]] = []
    if DATA.is_file():
        with DATA.open(encoding="utf-8") as fh:
            for line in fh:
                base.extend(json.loads(line)["messages"])
                if len(base) >= n:
                    break
    if not base:
        base = [{"role": "user" if k % 2 == 0 else "assistant",
                 "content": f"booking ABC{k:04d} for flight HAT{k % 300:03d} " * 8}
                for k in range(200)]
    return [{**base[k % len(base)], "bench_seq": k} for k in range(n)]


def run(make: Callable[[], Any], msgs: list[dict[str, Any]], *, sessions: int, batch: int,
        writers: int) -> tuple[int, float, list[float]]:
    """Append ``msgs`` round-robin into ``sessions`` chains, ``batch`` per append, from
    ``writers`` threads. Returns (appends, wall seconds, per-append latencies in s)."""
    store = make()
    per_session: dict[int, list[dict[str, Any]]] = {s: [] for s in range(sessions)}
    for k, m in enumerate(msgs):
        per_session[k % sessions].append(m)
    # each append's nodes, prepared before the clock starts (hashes are the caller's work)
    jobs: dict[int, list[tuple[str, list[ArchiveNode]]]] = {w: [] for w in range(writers)}
    for s, ms in per_session.items():
        prev, pos, sid = "", 0, f"bench/{s:03d}"
        for i in range(0, len(ms), batch):
            nodes = []
            for m in ms[i:i + batch]:
                h = content_hash(m)
                nodes.append(ArchiveNode(pos, h, prev, m))
                prev, pos = chain_id(prev, h), pos + 1
            jobs[s % writers].append((sid, nodes))
    lat: list[float] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        mine = []
        for sid, nodes in jobs[w]:
            t0 = time.perf_counter()
            store.append(sid, nodes)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    close = getattr(store, "close", None)
    if close:
        close()
    return len(lat), wall, lat


def _with_options(url: str, options: str) -> str:
    """``url`` with libpq ``options`` (command-line options for the server session)."""
    from urllib.parse import quote

    return f"{url}{'&' if '?' in url else '?'}options={quote(options)}"


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 100 else max(xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg", default=os.environ.get("COMPACTOR_TEST_PG"),
                    help="postgresql:// URL of a database the run may create a schema in "
                         "(default $COMPACTOR_TEST_PG)")
    ap.add_argument("--appends", type=int, default=2000, help="appends per store and run")
    ap.add_argument("--batch", type=int, default=2, help="messages per append")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--writers", default="1,4", help="comma-separated writer thread counts")
    args = ap.parse_args(argv)
    if not args.pg:
        ap.error("no PostgreSQL: pass --pg postgresql://USER@HOST:PORT/DB or set "
                 "COMPACTOR_TEST_PG (.ci/run starts one)")
    import psycopg

    from compactor._pgstore import PostgresStore

    writers = [int(w) for w in args.writers.split(",")]
    msgs = messages(args.appends * args.batch)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        settings = {k: conn.execute(f"SHOW {k}").fetchone()[0]
                    for k in ("server_version", "synchronous_commit", "fsync")}
        conn.execute(f'CREATE SCHEMA "{schema}"')
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for w in writers:
                stores: list[tuple[str, Callable[[], Any]]] = [
                    ("file (fsync off)", lambda w=w: FileSessionStore(Path(tmp) / f"a{w}")),
                    ("file (fsync on)",
                     lambda w=w: FileSessionStore(Path(tmp) / f"b{w}", fsync=True)),
                    ("postgresql", lambda w=w: PostgresStore(
                        args.pg, schema=schema, max_size=max(2, w))),
                    # the same with commits not waiting for the WAL flush: a server crash
                    # may lose the last commits (a killed worker still loses nothing)
                    ("postgresql (async)", lambda w=w: PostgresStore(
                        _with_options(args.pg, f"-csearch_path={schema} "
                                      "-csynchronous_commit=off"), max_size=max(2, w))),
                ]
                for name, make in stores:
                    if name.startswith("postgresql"):
                        with psycopg.connect(args.pg, autocommit=True) as conn:
                            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                            conn.execute(f'CREATE SCHEMA "{schema}"')
                    n, wall, lat = run(make, msgs, sessions=args.sessions, batch=args.batch,
                                       writers=w)
                    rows.append((name, w, n, n / wall, statistics.median(lat) * 1e3,
                                 p99(lat) * 1e3))
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"{args.appends} appends of {args.batch} messages into {args.sessions} sessions; "
          f"PostgreSQL {settings['server_version']} (synchronous_commit="
          f"{settings['synchronous_commit']}, fsync={settings['fsync']}); "
          f"{os.cpu_count()} CPUs")
    print(f"{'store':<18} {'writers':>7} {'appends':>8} {'appends/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8}")
    for name, w, n, rate, p50, p99_ms in rows:
        print(f"{name:<18} {w:>7} {n:>8} {rate:>10.0f} {p50:>8.2f} {p99_ms:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
