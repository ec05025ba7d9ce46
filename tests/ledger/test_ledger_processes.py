"""Real processes: SIGKILL at random points of a writer's progress loses no acknowledged record, and many
concurrent writers never tear or interleave lines."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from compactor.ledger import read_records, verify
from procio import LineReader

KILLS = 200
RUNS_PER_LEDGER = 20


class _ForkServer:
    """``ledger_writer.py --serve``: forks one writer process per run, already warmed up."""

    def __init__(self, writer) -> None:
        self.proc = subprocess.Popen(writer.argv("--serve"), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=writer.env, text=True)
        assert self.proc.stdout is not None
        self.lines = LineReader(self.proc.stdout)

    def start(self, cfg: dict, fifo: Path) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        cmd = {"path": str(cfg["path"]), "writer": cfg["id"], "rotate_bytes": 1500,
               "fsync": cfg["fsync"], "pause": cfg["pause"], "split": cfg["split"],
               "stdout": str(fifo)}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return int(self.lines.readline(timeout=60))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not exited, not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _run_and_kill(server: _ForkServer, cfg: dict, fifo: Path) -> list[int]:
    """Start a writer; once it has acknowledged ``cfg["kill_after"]`` records (its own
    progress), wait ``cfg["jitter_s"]`` (a fraction of one record's write) and SIGKILL it
    while it is still running; return the acknowledged seqs (at least ``kill_after``)."""
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    want = cfg["kill_after"]
    try:
        pid = server.start(cfg, fifo)
        buf = b""
        deadline = time.monotonic() + 20
        while not buf.startswith(b"ready\n") or buf.count(b"\n") - 1 < want:
            assert time.monotonic() < deadline, f"writer acknowledged fewer than {want} records"
            try:
                buf += os.read(fd, 65536)
            except BlockingIOError:
                pass
            time.sleep(0.0002)
        time.sleep(cfg["jitter_s"])
        assert _alive(pid), "the writer exited before the kill"
        os.kill(pid, signal.SIGKILL)
        while True:  # read until no writer is left: the process is gone
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.0005)
                continue
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
        os.unlink(fifo)
    lines = buf[len(b"ready\n"):].split(b"\n")
    acked = [int(x) for x in lines[:-1]]  # only complete lines are acknowledgements
    assert len(acked) >= want and acked[:want] == list(range(want)), (want, acked[:5])
    return acked


def _check(path: Path, expected: set[tuple[int, int]], where: str) -> int:
    """Read the ledger back, assert nothing acknowledged is lost or doubled and the only
    damage is a torn last line of the active segment; return the number of torn lines."""
    records = read_records(path)
    got = [(r["writer"], r["seq"]) for r in records if r["event"] == "usage"]
    report = records.report
    assert len(got) == len(set(got)), f"{where}: a record was read twice"
    missing = expected - set(got)
    assert not missing, f"{where}: acknowledged records lost: {sorted(missing)[:5]}"
    by_writer: dict[int, list[int]] = defaultdict(list)
    for w, s in got:
        by_writer[w].append(s)
    for w, seqs in by_writer.items():
        assert seqs == list(range(len(seqs))), f"{where}: writer {w} has gaps or disorder"
    assert not report.invalid, f"{where}: invalid lines {report.invalid}"
    assert len(report.torn) <= 1, f"{where}: more than one torn line {report.torn}"
    for bad in report.torn:
        assert bad.at_tail and bad.file == str(path), f"{where}: torn line not at the tail {bad}"
    return len(report.torn)


def test_sigkill_at_random_points_of_progress_loses_no_acknowledged_record(tmp_path, writer):
    """Across 200 SIGKILLs of a running, rotating writer (each after a random number of acknowledged records), every acknowledged record is read back exactly once, and the only damage is one torn last line that repair removes."""
    seed = int(os.environ.get("LEDGER_CRASH_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    configs = []
    for k in range(KILLS):
        split = rng.random() < 0.5
        configs.append({
            "id": k, "path": tmp_path / f"l{k // RUNS_PER_LEDGER}" / "ledger.jsonl",
            "split": 0.002 if split else 0, "fsync": rng.choice(["never", "interval", "always"]),
            "pause": 0 if split else 0.0005, "kill_after": rng.randint(0, 40),
            "jitter_s": rng.uniform(0, 0.003 if split else 0.0008),
        })
    expected: dict[Path, set[tuple[int, int]]] = defaultdict(set)
    torn_seen = repaired_runs = pending_seen = 0
    started = time.monotonic()
    server = _ForkServer(writer)
    try:
        for k, cfg in enumerate(configs):
            where = f"seed={seed} run={k} split={cfg['split']} fsync={cfg['fsync']}"
            cfg["path"].parent.mkdir(exist_ok=True)
            acked = _run_and_kill(server, cfg, tmp_path / "acks.fifo")
            path = cfg["path"]
            expected[path].update((k, s) for s in acked)
            torn_seen += _check(path, expected[path], where)
            if k % 2 == 0:  # repair now; on odd runs the next writer heals the tail itself
                report = verify(path, repair=True)
                assert report.ok, f"{where}: {report}"
                pending_seen += bool(report.pending)
                repaired_runs += bool(report.repairs)
                after = verify(path)
                assert after.ok and after.torn == () and after.pending == (), where
                assert _check(path, expected[path], where) == 0
    finally:
        server.close()
    for path, keys in expected.items():
        assert verify(path, repair=True).ok
        final = verify(path)
        assert final.ok and final.torn == () and final.invalid == ()
        _check(path, keys, f"seed={seed} final {path}")
    assert sum(len(v) for v in expected.values()) > KILLS * 5, "writers acknowledged too little"
    assert torn_seen >= 20, f"only {torn_seen} torn tails: the fault hook did not bite"
    assert any(len(list(p.parent.glob("*.jsonl.gz"))) > 3 for p in expected), "no rotation"
    elapsed = time.monotonic() - started
    print(f"\ncrash test: seed={seed} kills={KILLS} torn={torn_seen} repairs={repaired_runs} "
          f"interrupted-gzip={pending_seen} acked={sum(len(v) for v in expected.values())} "
          f"in {elapsed:.1f}s")


def test_eight_processes_append_80000_intact_records(tmp_path, writer):
    """Eight processes appending 10,000 records each to one rotating ledger leave exactly 80,000 intact records, each (writer, seq) once and in each writer's order."""
    path = tmp_path / "ledger.jsonl"
    started = time.monotonic()
    procs = [subprocess.Popen(writer.argv(path, w, 10_000, 256 * 1024, "never"), env=writer.env,
                              stdout=subprocess.DEVNULL) for w in range(8)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    wrote = time.monotonic() - started
    records = read_records(path)
    pairs = [(r["writer"], r["seq"]) for r in records]
    assert records.report.clean, records.report
    assert len(pairs) == 80_000 and len(set(pairs)) == 80_000
    by_writer: dict[int, list[int]] = defaultdict(list)
    for w, s in pairs:
        by_writer[w].append(s)
    assert all(seqs == list(range(10_000)) for seqs in by_writer.values())
    segments = list(tmp_path.glob("ledger.*.jsonl*"))
    assert len(segments) >= 20
    assert verify(path).ok
    print(f"\n8x10000 appends: {wrote:.1f}s writing, {len(segments)} closed segments")
