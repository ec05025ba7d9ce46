"""Issue 12, item 8: the offline summarizer is linear in span size; one evicted 1 MB message
is summarized in < 3 s.

Builds a seeded, synthetic message of ``--mb`` megabytes (prose sentences mixing words,
identifiers, paths, URLs, amounts, dates and numbers; the shape of a long pasted log or
document), evicts it as a user message, as a tool result, and as 0.25 / 0.5 / 1 MB user
messages (to show the growth is linear), and prints the seconds ``ExtractiveSummarizer``
takes for each (budget 2,000 tokens, the default cap), with the heuristic counter and with
tiktoken. Goal: 1 MB < 3 s. Wall and CPU seconds are printed: on a shared, loaded machine
the CPU time is the figure to compare (wall time includes waiting for a core).

    .venv/bin/python benchmarks/bench_summarizer_speed.py [--mb 1] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from compactor import ExtractiveSummarizer, SummaryRequest
from compactor._format import Format
from compactor._tokens import HeuristicCounter, default_counter

_WORDS = ("the service returned data for each request while the worker retried the job "
          "after timeout and the user asked about invoice totals region config deploy "
          "cache index table column build branch review budget limit metric report").split()


def synthetic_text(n_bytes: int, seed: int) -> str:
    """Seeded prose of about ``n_bytes`` characters with identifier-like tokens mixed in."""
    rnd = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n_bytes:
        words = [rnd.choice(_WORDS) for _ in range(rnd.randint(6, 18))]
        for k in rnd.sample(range(7), rnd.randint(1, 3)):
            _insert(rnd, words, k)
        s = " ".join(words).capitalize() + rnd.choice((".", ".", "!", "?")) + " "
        out.append(s)
        size += len(s)
    return "".join(out)


def _insert(rnd: random.Random, words: list[str], kind: int) -> None:
    """Insert one identifier-like item of kind ``kind`` (0-6) into ``words``."""
    items = (f"src/mod{rnd.randint(0, 999)}/file_{rnd.randint(0, 99)}.py",
             f"${rnd.randint(1, 99999):,}",
             f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
             f"ID{rnd.randint(1000, 999999)}",
             f"https://x{rnd.randint(0, 99)}.example.com/p/{rnd.randint(0, 9999)}",
             f"v{rnd.randint(0, 9)}.{rnd.randint(0, 30)}.{rnd.randint(0, 99)}",
             f"{rnd.randint(100, 99999)}")
    words.insert(rnd.randrange(len(words) + 1), items[kind])
    if kind == 6:
        words.insert(0, rnd.choice(("Alice", "Bob", "Carol", "Dana")))


def time_one(messages: list[dict], counter, budget: int = 2000) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to summarize ``messages``."""
    req = SummaryRequest(messages, Format.ANTHROPIC, None, budget, counter)
    t0, c0 = time.perf_counter(), time.process_time()
    ExtractiveSummarizer().summarize_sync(req)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    text = synthetic_text(int(a.mb * 1_000_000), a.seed)
    for cname, counter in (("heuristic", HeuristicCounter()), ("tiktoken", default_counter())):
        for share in (0.25, 0.5, 1.0):
            part = text[:int(len(text) * share)]
            s, c = time_one([{"role": "user", "content": part}], counter)
            print(f"{cname:9s} user message      {len(part) / 1e6:5.2f} MB: {s:6.2f} s wall, {c:6.2f} s CPU")
        tool = [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read",
                                                   "input": {"path": "big.log"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": text}]}]
        s, c = time_one(tool, counter)
        print(f"{cname:9s} tool result       {len(text) / 1e6:5.2f} MB: {s:6.2f} s wall, {c:6.2f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
