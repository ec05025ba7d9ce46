"""Issue 11: the per-call cost of ``compact_if_needed`` under the threshold, this tree's
content-addressed session engine vs the engine of an earlier commit, side by side in one run.

Each engine runs in its own child process (the earlier one from ``git archive REV``), in
alternating rounds (A B A B ...), on the same history: tau-bench airline conversations
chained to N messages (``../shared/data``; a synthetic history when it is absent), grown by
one message per call (the agent appends to its list), in three caller styles:

* ``same``      -- the same list object, appended to (what the old engine was built for);
* ``copied``    -- a new list of the same message objects each call;
* ``roundtrip`` -- a JSON round-trip of the whole history each call (rebuilt objects; only
  the new engine keeps O(new) cost here -- the old one re-counted everything).

It prints the median per-call time of the last 10% of calls (microseconds, wall clock, the
median over rounds) and the ratio new / old. The issue's bar: ``same`` within 10%.

    .venv/bin/python benchmarks/bench_session_engine.py [--rev 4a08e36] [--messages 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "tau_bench_gpt4o_airline.anthropic.jsonl"

CHILD = r"""
import asyncio, json, statistics, sys, time
from pathlib import Path
from compactor import MessageCompactor, HeuristicCounter
from compactor._format import Format
n, style, path, counter = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if path:
    from compactor.bench._data import chained_history, load_dataset
    msgs, _system = chained_history(load_dataset(Path(path)).conversations, n)
else:
    msgs = [{"role": "user" if k % 2 == 0 else "assistant",
             "content": f"message {k}: booking ABC{k:04d} for flight HAT{k % 300:03d} " * 3}
            for k in range(n)]
from compactor import TiktokenCounter
comp = MessageCompactor(counter=HeuristicCounter() if counter == "heuristic" else TiktokenCounter(),
                        window=10_000_000)
times = []
async def main():
    history = []
    for m in msgs:
        history.append(m)
        h = history if style == "same" else list(history) if style == "copied" else json.loads(json.dumps(history))
        t0 = time.perf_counter_ns()
        await comp.compact_if_needed(h, session_id="b", fmt=Format.ANTHROPIC)
        times.append(time.perf_counter_ns() - t0)
asyncio.run(main())
tail = times[-max(1, len(times) // 10):]
print(json.dumps({"median_us": statistics.median(tail) / 1e3}))
"""


def export(rev: str, dest: Path) -> Path:
    """The package tree of ``rev`` under ``dest`` (``git archive``)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "compactor", "adapters"],
                          check=True, capture_output=True).stdout
    tar = dest / "old.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    (dest / "compactor" / "adapters").symlink_to(dest / "adapters")
    return dest


def child(tree: Path, n: int, style: str, counter: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), style,
                          str(DATA) if DATA.is_file() else "", counter],
                         env=env, capture_output=True, text=True, timeout=600,
                         cwd=tempfile.gettempdir())
    if out.returncode:
        raise SystemExit(f"the {tree} engine failed: {out.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(out.stdout)["median_us"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rev", default="4a08e36", help="the earlier engine's commit")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--styles", default="same,copied,roundtrip")
    p.add_argument("--counters", default="heuristic,tiktoken")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old = export(a.rev, Path(tmp))
        print(f"history: {a.messages:,} messages, grown by one per call; "
              f"median of the last 10% of calls; {a.rounds} alternating rounds")
        print(f"{'counter':<10} {'caller':<10} {'old (' + a.rev + ')':>14} {'new':>10} {'new/old':>8}")
        for counter in a.counters.split(","):
            for style in a.styles.split(","):
                olds, news = [], []
                for _ in range(a.rounds):
                    olds.append(child(old, a.messages, style, counter))
                    news.append(child(ROOT, a.messages, style, counter))
                o, n = statistics.median(olds), statistics.median(news)
                print(f"{counter:<10} {style:<10} {o:>12.1f}us {n:>8.1f}us {n / o:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
