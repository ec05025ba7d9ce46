"""The judged fleet scenario: 8 real processes (2 simulated hosts x 4 workers) serve 20
shared sessions through one PostgreSQL. Every session restores to what was sent, no state
update is lost, no invalid history is returned -- and kill -9 of workers at random points
loses no acknowledged message."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from builders import anthropic_session
from compactor._pgstore import PostgresStore
from compactor._store import content_hash
from procio import LineReader
from test_pg_compactor_sessions import turn

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fleet_worker.py")
SESSIONS, TURNS, WINDOW = 20, 10, 2000
HOSTS, PER_HOST = 2, 4


def write_script(path: Path) -> dict[str, list[dict]]:
    """20 sessions: a few opening turns, then 10 agent steps of 5 messages each; the turn
    boundaries are where a worker may send up to."""
    sessions, bounds = {}, {}
    for k in range(SESSIONS):
        msgs = anthropic_session(2 + k % 3)
        b = [len(msgs)]
        for t in range(TURNS):
            msgs += turn(100 * k + t)
            b.append(len(msgs))
        sessions[f"host-shared/{k:02d}"] = msgs
        bounds[f"host-shared/{k:02d}"] = b
    path.write_text(json.dumps({"sessions": sessions, "bounds": bounds}))
    return sessions


class Fleet:
    """The worker processes, their output merged into one queue of (worker, line)."""

    def __init__(self, url: str, script: Path, lock_share: float, seed: int) -> None:
        self.url, self.script, self.lock_share, self.seed = url, script, lock_share, seed
        self.procs: dict[str, subprocess.Popen] = {}
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.spawned = 0

    def spawn(self, host: int, slot: int) -> str:
        tag = f"h{host}w{slot}.{self.spawned}"
        self.spawned += 1
        # host 1 spells the URL with the postgres:// alias: both select the same store
        url = self.url if host == 0 else "postgres://" + self.url.split("://", 1)[1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
        p = subprocess.Popen(
            [sys.executable, str(WORKER), url, str(self.script), tag,
             str(self.seed * 1000 + self.spawned), str(self.lock_share), str(WINDOW)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        rd = LineReader(p.stdout)
        self.procs[tag] = p

        def pump() -> None:
            while True:
                try:
                    line = rd.readline(timeout=115)
                except AssertionError:
                    line = ""
                self.lines.put((tag, line))
                if not line:
                    return

        threading.Thread(target=pump, daemon=True).start()
        return tag

    def start(self, tags: list[str], tally: "Tally") -> None:
        """Wait for each worker's ``ready`` (the other workers' lines go to ``tally``),
        then let them all go at once."""
        pending = set(tags)
        deadline = time.monotonic() + 90
        while pending:
            tag, line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if tag not in pending:
                if line:
                    tally.take(tag, line)
                else:
                    assert tag in tally.done, f"worker {tag} died: {self.procs[tag].wait(10)}"
                continue
            assert line.strip() == "ready", f"worker {tag}: {line!r} before ready"
            pending.discard(tag)
        for tag in tags:
            self.procs[tag].stdin.write("go\n")
            self.procs[tag].stdin.flush()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(10)


class Tally:
    """What the workers acknowledged: the longest acked history per session, compactions
    acked per session whose state save succeeded, and invalid histories."""

    def __init__(self) -> None:
        self.acked: dict[str, int] = {}
        self.compactions: dict[str, int] = {}
        self.bad: list[str] = []
        self.done: set[str] = set()
        self.acks = 0

    def take(self, tag: str, line: str) -> None:
        parts = line.split()
        if parts[0] == "ack":
            sid, n, saved = parts[1], int(parts[2]), int(parts[3])
            self.acked[sid] = max(self.acked.get(sid, 0), n)
            self.compactions[sid] = self.compactions.get(sid, 0) + saved
            self.acks += 1
        elif parts[0] == "bad":
            self.bad.append(f"{tag}: {line.strip()}")
        elif parts[0] == "done":
            self.done.add(tag)


def next_line(fleet: Fleet, tally: Tally, deadline: float) -> tuple[str, str]:
    """The next output line of any worker, taken into ``tally`` ('' when a worker's output
    ended: it must have printed ``done``)."""
    tag, line = fleet.lines.get(timeout=max(0.1, deadline - time.monotonic()))
    if not line:
        assert tag in tally.done, f"worker {tag} died: exit {fleet.procs[tag].wait(10)}"
    else:
        tally.take(tag, line)
    return tag, line


def run_to_end(fleet: Fleet, tally: Tally, live: set[str], deadline: float) -> None:
    while live - tally.done:
        next_line(fleet, tally, deadline)


def check_final(store: PostgresStore, sessions: dict[str, list[dict]], tally: Tally) -> None:
    """Every session restores exactly to its script; its state's compaction count equals
    its version (each save is one compaction on the version it read: a lost update would
    leave the count behind); no invalid history."""
    assert tally.bad == []
    for sid, msgs in sessions.items():
        restored = store.restore(sid)
        assert [content_hash(m) for m in restored] == [content_hash(m) for m in msgs], sid
        state = store.load_state(sid)
        assert state is not None and state["compaction_count"] >= 1, sid
        assert state["compaction_count"] == state["version"], (sid, state["version"])


def test_eight_workers_on_two_hosts_share_twenty_sessions(pg_url, tmp_path):
    """8 processes serving 20 shared sessions through one PostgreSQL: each session restores
    to the history sent, the compactions the workers report as saved per session equal its
    compaction count and version (no lost update), and no returned history is invalid."""
    script = tmp_path / "script.json"
    sessions = write_script(script)
    PostgresStore(pg_url).close()            # migrate once, before the race
    fleet = Fleet(pg_url, script, lock_share=0.0, seed=1)
    tally = Tally()
    try:
        tags = [fleet.spawn(h, w) for h in range(HOSTS) for w in range(PER_HOST)]
        fleet.start(tags, tally)
        run_to_end(fleet, tally, set(tags), time.monotonic() + 100)
    finally:
        fleet.stop()
    with PostgresStore(pg_url) as store:
        check_final(store, sessions, tally)
        for sid in sessions:
            assert tally.acked[sid] == len(sessions[sid])
            assert tally.compactions[sid] == store.load_state(sid)["compaction_count"], sid


def test_kill_9_of_workers_loses_no_acknowledged_message(pg_url, tmp_path):
    """While 8 workers serve 20 shared sessions (half the steps under the session lock),
    three of them are killed with SIGKILL at random points after an acknowledgement and
    replaced; right after each kill (the others paused) every acknowledged history is in
    the store, and in the end every session restores to what was sent."""
    seed = int(os.environ.get("COMPACTOR_FLEET_SEED", "7"))
    rng = random.Random(seed)
    script = tmp_path / "script.json"
    sessions = write_script(script)
    hashes = {sid: [content_hash(m) for m in msgs] for sid, msgs in sessions.items()}
    PostgresStore(pg_url).close()
    fleet = Fleet(pg_url, script, lock_share=0.5, seed=seed)
    tally = Tally()
    kills = 0
    store = PostgresStore(pg_url)
    try:
        tags = [fleet.spawn(h, w) for h in range(HOSTS) for w in range(PER_HOST)]
        live = set(tags)
        fleet.start(tags, tally)
        deadline = time.monotonic() + 100
        next_kill = rng.randint(3, 10)
        while live - tally.done:
            tag, line = next_line(fleet, tally, deadline)
            if not line or kills == 3 or tally.acks < next_kill or tag in tally.done:
                continue
            victim = tag if rng.random() < 0.5 else rng.choice(sorted(live - tally.done))
            time.sleep(rng.random() * 0.05)            # land anywhere in its next step
            os.kill(fleet.procs[victim].pid, signal.SIGKILL)
            fleet.procs[victim].wait(10)
            others = [t for t in live - tally.done if t != victim]
            for t in others:
                os.kill(fleet.procs[t].pid, signal.SIGSTOP)
            try:
                # what the victim printed before it died is acknowledged too
                while True:
                    t, ln = fleet.lines.get(timeout=30)
                    if ln:
                        tally.take(t, ln)
                    elif t == victim:
                        break
                for sid, n in tally.acked.items():
                    have = store.branch_hashes(sid)
                    assert len(have) >= n, f"{sid}: {n} acknowledged, {len(have)} stored"
                    assert have == hashes[sid][:len(have)], sid
            finally:
                for t in others:
                    os.kill(fleet.procs[t].pid, signal.SIGCONT)
            live.discard(victim)
            host, slot = int(victim[1]), int(victim[3])
            fresh = fleet.spawn(host, slot)
            live.add(fresh)
            fleet.start([fresh], tally)
            kills += 1
            next_kill = tally.acks + rng.randint(3, 10)
        assert kills >= 2, f"only {kills} kills happened (seed {seed})"   # each proves the rule
        check_final(store, sessions, tally)
    finally:
        fleet.stop()
        store.close()
