"""Session state in PostgreSQL is versioned optimistically (a stale writer gets a typed
conflict, concurrent writers lose no update), and the session lock excludes other
processes -- also one killed while holding it does not keep it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from compactor._pgstore import PostgresStore
from compactor._store import StateConflictError
from procio import LineReader

ROOT = Path(__file__).resolve().parents[2]

HOLDER = r"""
import sys
from compactor._pgstore import PostgresStore
store = PostgresStore(sys.argv[1])
with store.lock(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
store.close()
"""


def test_stale_expected_version_raises_a_typed_conflict(pg_store):
    """save_state with the version it loaded succeeds and bumps the version; with a stale
    one it raises StateConflictError naming both versions, and the saved state stays."""
    assert pg_store.load_state("s") is None
    assert pg_store.save_state("s", {"n": 1}, expected_version=0) == 1
    assert pg_store.save_state("s", {"n": 2}, expected_version=1) == 2
    with pytest.raises(StateConflictError) as e:
        pg_store.save_state("s", {"n": 99}, expected_version=1)
    assert (e.value.expected, e.value.found) == (1, 2)
    state = pg_store.load_state("s")
    assert (state["n"], state["version"], state["session_id"]) == (2, 2, "s")
    assert pg_store.save_state("s", {"n": 3}) == 3        # no expectation: always saved


def test_concurrent_read_modify_write_loses_no_update(pg_url):
    """8 threads on two store instances each add 1 to a counter in the state 15 times,
    reloading on conflict: the final counter is 120 and the version says 120 saves."""
    stores = [PostgresStore(pg_url, max_size=4), PostgresStore(pg_url, max_size=4)]
    conflicts = []
    start = threading.Barrier(8)     # all 8 read version 0 before any saves: a sure race

    def worker(store: PostgresStore) -> None:
        first = True
        for _ in range(15):
            while True:
                st = store.load_state("c") or {"n": 0, "version": 0}
                if first:
                    first = False
                    start.wait(30)
                try:
                    store.save_state("c", {"n": st["n"] + 1}, expected_version=st["version"])
                    break
                except StateConflictError:
                    conflicts.append(1)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    final = stores[0].load_state("c")
    for s in stores:
        s.close()
    assert not any(t.is_alive() for t in threads)
    assert (final["n"], final["version"]) == (120, 120)
    assert len(conflicts) >= 7         # the first round: one of the 8 saves, 7 reload


def _holder(url: str, sid: str) -> tuple[subprocess.Popen, LineReader]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", HOLDER, url, sid], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    rd = LineReader(p.stdout)
    assert rd.readline(timeout=60).strip() == "locked"
    return p, rd


def test_lock_excludes_another_process_until_it_releases(pg_store, pg_url):
    """While another process holds a session's lock, lock_within times out on it (other
    sessions stay free); once it releases, the lock is ours."""
    p, rd = _holder(pg_url, "team/a")
    try:
        with pytest.raises(TimeoutError, match="locked by another writer"):
            with pg_store.lock_within("team/a", 0.3):
                pass
        with pg_store.lock_within("team/b", 5):
            pass
        p.stdin.write("go\n")
        p.stdin.flush()
        assert rd.readline(timeout=30).strip() == "released"
        with pg_store.lock_within("team/a", 10):
            with pg_store.lock("team/a"):       # reentrant in the holding thread
                pass
    finally:
        p.kill()
        p.wait(10)


def test_a_holder_killed_with_sigkill_does_not_keep_the_lock(pg_store, pg_url):
    """kill -9 of a process holding a session's lock frees it (the server drops the
    connection and its advisory lock)."""
    p, _ = _holder(pg_url, "s")
    try:
        with pytest.raises(TimeoutError):
            with pg_store.lock_within("s", 0.2):
                pass
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        with pg_store.lock_within("s", 20):
            pass
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_lock_excludes_another_thread_of_this_process(pg_store):
    """Another thread's lock_within on a session this thread holds times out."""
    out = []

    def other() -> None:
        try:
            with pg_store.lock_within("s", 0.2):
                out.append("got it")
        except TimeoutError:
            out.append("timeout")

    with pg_store.lock("s"):
        t = threading.Thread(target=other)
        t.start()
        t.join(30)
    assert out == ["timeout"]
