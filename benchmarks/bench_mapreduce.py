"""Map-reduce summarization: wall time of a span 8x the summarizer's input window.

Against the loopback provider server with 1 s of injected latency on every summary call,
it times (1) one summary call of a span that fits the window, (2) the 8x span summarized
sequentially (``max_concurrency=1``), (3) the same concurrently (``max_concurrency=2 x chunks``,
partial summaries merged locally when they fit the budget together), and (4) concurrently
with a budget too small for that, so the merge is one more model call. It prints each wall
time and its ratio to (1). The goal is (3) <= 1.5x.

    .venv/bin/python benchmarks/bench_mapreduce.py [--latency 1.0] [--chunks 8]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

import anthropic

from compactor import MessageCompactor, PlanConfig, TiktokenCounter, message_tokens
from compactor.adapters.anthropic_sdk import AnthropicSummarizer
from compactor.testing import MESSAGES_PATH, Fault, LoopbackServer

MODEL = "claude-haiku-4-5"


def history(n: int) -> list[dict]:
    out: list[dict] = []
    for t in range(n):
        out.append({"role": "user", "content": f"Ticket T-{t}: customer {t} reports a failed "
                    f"payment on invoice INV-{4000 + t}. " * 4})
        out.append({"role": "assistant", "content": f"Refunded INV-{4000 + t} and notified "
                    f"customer {t}; root cause was a stale card token. " * 4})
    out.append({"role": "user", "content": "Summarize the open items."})
    return out


async def run(latency: float, chunks: int) -> None:
    counter = TiktokenCounter()
    msgs = history(64)
    probe = MessageCompactor(counter=counter)
    plan = probe.dry_run(msgs, window=6000, force=True)
    span = [msgs[i] for i in plan.evicted]
    span_tokens = sum(message_tokens(m, plan.fmt, counter) for m in span)
    window = math.floor(span_tokens / chunks)   # the span is >= chunks x the window
    with LoopbackServer(lambda r: f"Part: invoices handled, {r.seq} items.") as srv:
        srv.enqueue(Fault.latency(latency), path=MESSAGES_PATH, times=None)
        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key="bench")

        async def timed(concurrency: int, budget: int, sub: list[dict], input_window: int):
            summ = AnthropicSummarizer(raw, model=MODEL, input_window=input_window)
            comp = MessageCompactor(summarizer=summ, counter=counter,
                                    max_concurrency=concurrency,
                                    config=PlanConfig(max_summary_tokens=budget))
            before = len(srv.requests)
            t0 = time.perf_counter()
            await comp.compact_if_needed(sub, model=MODEL, window=6000, force=True)
            return time.perf_counter() - t0, len(srv.requests) - before

        one, n1 = await timed(1, 600, msgs, 10 ** 6)
        seq, ns = await timed(1, 600, msgs, window)
        con, nc = await timed(2 * chunks, 600, msgs, window)
        merge, nm = await timed(2 * chunks, 12, msgs, window)
        await raw.close()
    print(f"span: {span_tokens} tokens; summarizer input window: {window} tokens "
          f"(span = {span_tokens / window:.1f}x window); injected latency {latency:g} s")
    print(f"{'run':<42}{'calls':>6}{'wall s':>9}{'x one call':>12}")
    for name, t, n in (("one call (span fits the window)", one, n1),
                       ("sequential, max_concurrency=1", seq, ns),
                       (f"concurrent, max_concurrency={2 * chunks}", con, nc),
                       ("concurrent, merge by the model", merge, nm)):
        print(f"{name:<42}{n:>6}{t:>9.2f}{t / one:>12.2f}")
    print(f"concurrent / sequential = {con / seq:.3f}; goal concurrent <= 1.5x one call: "
          f"{'met' if con <= 1.5 * one else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=1.0, help="seconds per summary call")
    ap.add_argument("--chunks", type=int, default=8, help="span size in summarizer windows")
    a = ap.parse_args()
    asyncio.run(run(a.latency, a.chunks))


if __name__ == "__main__":
    main()
