"""Issue 2: the per-call cost of ``compact_if_needed`` under the threshold vs LangChain's
``trim_messages``, in one run.

The history is tau-bench airline conversations (Anthropic format) chained to 2,000
messages (``../shared/data``, or ``--data FILE``). Ours: ``compact_if_needed`` on a history
that grows by one message per call (counts cached: each call counts and validates only the
new message), median CPU of the last 10% of calls. trim_messages: ``trim_messages(
strategy="last", token_counter=count_tokens_approximately)`` on the same 2,000-message
history. Goal: ours >= 100x faster. Prints both costs and the ratio; the code is
``compactor.bench._run.under_threshold`` (also recorded by ``compactor bench``).

    .venv/bin/python benchmarks/bench_under_threshold.py [--messages 2000] [--data FILE]
"""

from __future__ import annotations

import argparse
import sys

from compactor.bench._data import DEFAULT_DATA, chained_history, load_dataset
from compactor.bench._run import make_counter, under_threshold


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000, help="history length (messages)")
    p.add_argument("--data", default=str(DEFAULT_DATA / "tau_bench_gpt4o_airline.anthropic.jsonl"))
    p.add_argument("--counter", choices=["tiktoken", "heuristic"], default="tiktoken")
    a = p.parse_args(argv)
    ds = load_dataset(__import__("pathlib").Path(a.data))
    chain, system = chained_history(ds.conversations, a.messages)
    r = under_threshold(chain, system, ds.fmt, make_counter(a.counter))
    print(f"history: {r['messages']:,} messages of {ds.name} ({ds.fmt.value}), under the threshold")
    print(f"ours, {r['counter']} counts:   {r['ours_per_call_ms'] * 1e3:8.1f} us per call")
    print(f"ours, heuristic counts:  {r['ours_heuristic_per_call_ms'] * 1e3:8.1f} us per call")
    print(f"trim_messages:           {r['trim_messages_per_call_ms'] * 1e3:8.1f} us per call")
    print(f"ratio trim_messages / ours: {r['ratio']}x ({r['counter']}), "
          f"{r['ratio_heuristic']}x (heuristic); goal >= {r['goal_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
