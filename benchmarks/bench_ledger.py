"""Append throughput of the JSONL ledger under each fsync policy, side by side.

Run: ``python benchmarks/bench_ledger.py [--seconds 1] [--rounds 3] [--dir DIR]``.

Each policy appends ``compaction``-shaped records (about 400 bytes) to a fresh ledger
in one process, with the default cross-process lock and the default 64 MiB rotation.
The policies take turns for ``--rounds`` rounds of ``--seconds`` each (so background
load hits them alike); the median rate per policy is reported in records per second
and microseconds per record, then the ratios between policies.

fsync cost depends on the storage under ``--dir`` (its file system is printed): tmpfs
makes ``always`` look free; a laptop NVMe drive and a cloud block device differ by an
order of magnitude.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compactor.ledger import Ledger  # noqa: E402

POLICIES = ("never", "interval", "always")


def fs_type(path: Path) -> str:
    """The file system type holding ``path`` (from /proc/mounts; "?" elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    best, kind = "", "?"
    resolved = str(path.resolve())
    for fields in mounts:
        mount = fields[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, fields[2]
    return kind


def record(i: int) -> dict[str, object]:
    return {
        "agent_id": "bench-agent", "session_id": f"s{i % 7}", "tokens_before": 120_000 + i,
        "tokens_after": 48_000, "ratio": 0.4, "summarizer": "anthropic", "model": "claude-haiku",
        "summary_tokens": 1800, "cost_usd": 0.0021, "retention_score": 0.93, "duration_s": 2.4,
        "removed_hashes": [f"{i:08x}{j:056x}" for j in range(3)],
        "archive_ref": f"arch/{i}.jsonl.gz",
    }


def bench(directory: Path, policy: str, seconds: float) -> tuple[int, float]:
    """Append for ``seconds`` seconds to a fresh ledger; return (records, elapsed seconds),
    the final fsync of ``close`` included."""
    path = Path(tempfile.mkdtemp(prefix=policy + "-", dir=directory)) / "ledger.jsonl"
    led = Ledger(path, fsync=policy)  # type: ignore[arg-type]
    for i in range(50):  # warm up: file creation, caches
        led.emit("compaction", record(i))
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(25):
            led.emit("compaction", record(n))
            n += 1
        if time.perf_counter() >= deadline:
            break
    led.close()
    return n, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds per run (default 1)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per policy (default 3)")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp directory)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-ledger-", dir=args.dir))
    try:
        print(f"ledger append throughput: {root} ({fs_type(root)}), {args.rounds} x "
              f"{args.seconds:g} s per policy, 1 process, lock on, {os.cpu_count()} CPUs")
        runs: dict[str, list[tuple[int, float]]] = {p: [] for p in POLICIES}
        for _ in range(args.rounds):
            for policy in POLICIES:
                runs[policy].append(bench(root, policy, args.seconds))
        rates: dict[str, float] = {}
        print(f"{'fsync':<10}{'records':>10}{'records/s':>14}{'us/record':>12}   runs (records/s)")
        for policy in POLICIES:
            each = sorted(n / t for n, t in runs[policy])
            rates[policy] = statistics.median(each)
            total = sum(n for n, _ in runs[policy])
            print(f"{policy:<10}{total:>10}{rates[policy]:>14,.0f}{1e6 / rates[policy]:>12.1f}   "
                  + " ".join(f"{r:,.0f}" for r in each))
        print()
        print(f"interval is {rates['never'] / rates['interval']:.2f}x the cost of never")
        print(f"always   is {rates['interval'] / rates['always']:.1f}x slower than interval")
        print(f"always   is {rates['never'] / rates['always']:.1f}x slower than never")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
