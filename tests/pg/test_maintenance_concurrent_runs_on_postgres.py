"""Two maintenance processes on one PostgreSQL store, each with its own archive folder (two
hosts): the store's run lock lets one work at a time, so no session is archived twice and
none is lost, whether they race or one holds the lock while the other starts."""

from __future__ import annotations

import signal
import subprocess

from compactor._pgstore import PostgresStore
from maint_pg import (NOW_ISO, age_pg, canon_all, child_argv, child_env, cli, expected_tier,
                      outcome, plan, start_ledger, write_sessions)
from pg_support import count_rows
from procio import LineReader

AGES = {f"fleet/s{i:02d}": age for i, age in enumerate(
    [1, 3, 9, 15, 28, 33, 47, 61, 88, 95, 130, 210])}


def _site(pg_url, tmp_path):
    with PostgresStore(pg_url) as store:
        sent = write_sessions(store, plan(list(AGES), steps=3))
    age_pg(pg_url, AGES)
    start_ledger(tmp_path / "ledger.jsonl")
    return sent


def _args(pg_url, tmp_path, host: str) -> list[str]:
    return ["maintain", "--run", "--store", pg_url, "--archive", str(tmp_path / host),
            "--ledger", str(tmp_path / "ledger.jsonl"), "--now", NOW_ISO]


def _health(pg_url, tmp_path, host: str) -> list[str]:
    return ["health", "--json", *_args(pg_url, tmp_path, host)[2:]]


def _assert_each_session_once(pg_url, tmp_path, sent) -> None:
    """Every aged session is in exactly one host's archive, in its tier, restoring what was
    sent; the young ones are in PostgreSQL as sent; nothing is left taken out."""
    want = canon_all(sent)
    with PostgresStore(pg_url) as store:
        where = outcome(store, [tmp_path / "host-a", tmp_path / "host-b"])
    assert sorted(where) == sorted(AGES)
    for sid, age in AGES.items():
        tier = expected_tier(age, False)
        if tier == "full":
            assert where[sid] == {"live": want[sid], "archived": []}, sid
        else:
            assert where[sid]["live"] is None, sid
            assert [(t, m) for _, t, _, m in where[sid]["archived"]] == [(tier, want[sid])], sid
    assert count_rows(pg_url, "compactor_taken_out") == 0


def test_two_racing_runs_archive_each_session_once(pg_url, tmp_path):
    """Two `maintain --run` processes started together (different archive folders): each
    exits 0, or 1 saying another run holds the lock; after a last run every aged session
    is archived exactly once and none is lost."""
    sent = _site(pg_url, tmp_path)
    procs = [subprocess.Popen(child_argv(_args(pg_url, tmp_path, host)), env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for host in ("host-a", "host-b")]
    results = [p.communicate(timeout=110) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 or (p.returncode == 1 and "another maintenance run holds"
                                     in err), (p.returncode, out, err)
    assert any(p.returncode == 0 for p in procs)
    assert cli(_args(pg_url, tmp_path, "host-b"))[0] == 0
    _assert_each_session_once(pg_url, tmp_path, sent)


def test_a_run_holding_the_lock_keeps_the_other_host_out(pg_url, tmp_path):
    """While one run is paused mid-step holding the store's run lock, a run from another
    archive folder exits 1 naming the run lock and writes no entry (and its health sees
    a run in progress); after the first is killed with SIGKILL, the other host's health
    is critical about the taken-out session, its next run recovers nothing of it (the
    journal is on the first host) but archives every other session once, and the first
    host's next run puts its taken-out session back and finishes."""
    sent = _site(pg_url, tmp_path)
    trace = tmp_path / "points.txt"
    first = subprocess.Popen(child_argv(_args(pg_url, tmp_path, "host-a"), "action:pause:3",
                                        trace), env=child_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        assert LineReader(first.stderr).readline(timeout=90).startswith("PAUSED action")
        second = subprocess.run(child_argv(_args(pg_url, tmp_path, "host-b")), env=child_env(),
                                capture_output=True, text=True, timeout=110)
        assert second.returncode == 1 and "run lock" in second.stderr, second.stderr
        assert not (tmp_path / "host-b").exists() or not any(
            (tmp_path / "host-b").glob("[0-9]*/*/*.json"))
        assert count_rows(pg_url, "compactor_taken_out") == 1   # the paused step's session
        code, out, err = cli(_health(pg_url, tmp_path, "host-b"))
        assert "a run is in progress" in out, out
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    code, out, err = cli(_health(pg_url, tmp_path, "host-b"))
    assert code == 2 and "taken out by a run killed elsewhere" in out, (out, err)
    assert cli(_args(pg_url, tmp_path, "host-b"))[0] == 0
    assert count_rows(pg_url, "compactor_taken_out") == 1       # host-a's, until it recovers
    code, out, err = cli([*_args(pg_url, tmp_path, "host-a"), "--json"])
    assert code == 0 and '"rolled_back": ["archive ' in out, (out, err)
    _assert_each_session_once(pg_url, tmp_path, sent)
