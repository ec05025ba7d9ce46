"""Issue 14: what ``compactor proxy`` adds to an agent's calls, side by side with a direct run.

The same scripted agents (``tests/proxy/proxy_agents.py``: real ``anthropic`` and ``openai``
SDK clients, tool-using turns, half on each SDK, a third streamed) run twice against the
loopback provider server (``compactor.testing``): once straight to it, once through a
``compactor proxy`` child process (store and ledger in a temporary folder, offline
summaries, a small window so every session compacts). Printed:

* per-call latency as the client sees it, p50 / p99 in milliseconds: the direct run; the
  proxied run with every call, without the compaction calls, and the compaction calls
  alone; and the proxy's added latency (proxied - direct) at each percentile. A
  *compaction call* is one where the upstream received a smaller history (in JSON
  characters) for that session than on the call before: a compaction ran (a summary, or
  old tool results cleared); otherwise every call adds a turn.
* the proxy process's CPU time (user + system, ``/proc/PID/stat``) per request, ms.

Both runs share this machine's cores with the clients and the loopback server, so the
numbers are an upper bound of the proxy's own cost.

    .venv/bin/python benchmarks/bench_proxy.py [--sessions 50] [--turns 40] [--window 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "proxy"), str(ROOT / "tests")]

from proxy_agents import anthropic_agent, openai_agent, tool_model  # noqa: E402
from proxy_helpers import start_proxy  # noqa: E402

from compactor.testing import LoopbackServer  # noqa: E402
from compactor.testing import _server as loopback_server  # noqa: E402

KEY = "sk-bench-proxy-0000000000000000"


async def agents(url: str, sessions: int, turns: int) -> list[Any]:
    """Every session at once (even: anthropic SDK, odd: openai SDK; every third streamed)."""
    jobs = []
    for i in range(sessions):
        if i % 2 == 0:
            jobs.append(anthropic_agent(url, KEY, i, turns, stream=i % 3 == 0))
        else:
            jobs.append(openai_agent(url + "/v1", KEY, i, turns, stream=i % 3 == 0))
    return await asyncio.gather(*jobs)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank, in ms."""
    if not values:
        return float("nan")
    s = sorted(values)
    return 1000 * s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def compaction_calls(requests: list[Any]) -> set[tuple[int, int]]:
    """``(session, turn)`` of the calls where the upstream received a smaller history (JSON
    characters) for the session than on its call before (a compaction ran)."""
    by_session: dict[int, list[int]] = {}
    for r in requests:
        body = r.json if isinstance(r.json, dict) else {}
        msgs = body.get("messages") or []
        system = body.get("system") or (msgs[0].get("content") if msgs else "")
        if not isinstance(system, str) or "travel agent #" not in system:
            continue                                  # a summary call, or not an agent's
        sid = int(system.split("#", 1)[1].split(".", 1)[0])
        by_session.setdefault(sid, []).append(len(json.dumps(msgs)))
    out = set()
    for sid, counts in by_session.items():
        for turn in range(1, len(counts)):
            if counts[turn] < counts[turn - 1]:
                out.add((sid, turn))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--window", type=int, default=4000, help="the proxy's window, tokens")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the numbers")
    a = ap.parse_args()
    # the stdlib listen backlog (5) drops connections when 50 sessions open at once
    loopback_server._Server.request_queue_size = 128
    with LoopbackServer(tool_model) as up:
        t0 = time.perf_counter()
        direct = asyncio.run(agents(up.url, a.sessions, a.turns))
        direct_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "compactor.toml"
            cfg.write_text(f'[compactor]\nwindow = {a.window}\ncounter = "heuristic"\n')
            p = start_proxy(Path(tmp), "--anthropic-upstream", up.url, "--openai-upstream",
                            up.url + "/v1", "--config", str(cfg), "--store",
                            str(Path(tmp) / "store"), "--ledger", str(Path(tmp) / "l.jsonl"))
            try:
                up.reset_records()
                cpu0 = cpu_seconds(p.proc.pid)
                t0 = time.perf_counter()
                proxied = asyncio.run(agents(p.url, a.sessions, a.turns))
                proxied_s = time.perf_counter() - t0
                cpu = cpu_seconds(p.proc.pid) - cpu0
                requests = up.requests
            finally:
                p.stop()
        assert up.violations == [], up.violations[:3]
    compacting = compaction_calls(requests)
    d_all = [x for r in direct for x in r.latencies]
    p_all = [x for r in proxied for x in r.latencies]
    p_plain = [x for r in proxied for t, x in enumerate(r.latencies)
               if (r.session, t) not in compacting]
    p_comp = [x for r in proxied for t, x in enumerate(r.latencies)
              if (r.session, t) in compacting]
    n = len(p_all)
    rows = [("direct", d_all), ("proxy, all calls", p_all),
            ("proxy, compaction calls excluded", p_plain),
            ("proxy, compaction calls only", p_comp)]
    print(f"{a.sessions} sessions x {a.turns} turns ({n} calls; a third streamed), "
          f"window {a.window} tokens; direct {direct_s:.1f} s, proxied {proxied_s:.1f} s")
    print(f"{'run':36} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, xs in rows:
        print(f"{name:36} {len(xs):>6} {pct(xs, .5):>8.2f} {pct(xs, .99):>8.2f}")
    added = {"all": (pct(p_all, .5) - pct(d_all, .5), pct(p_all, .99) - pct(d_all, .99)),
             "excluded": (pct(p_plain, .5) - pct(d_all, .5),
                          pct(p_plain, .99) - pct(d_all, .99))}
    print(f"added by the proxy: p50 {added['all'][0]:+.2f} ms, p99 {added['all'][1]:+.2f} ms "
          f"(compaction calls excluded: p50 {added['excluded'][0]:+.2f} ms, "
          f"p99 {added['excluded'][1]:+.2f} ms)")
    print(f"proxy CPU: {cpu:.2f} s for {len(requests)} upstream requests = "
          f"{1000 * cpu / max(1, n):.2f} ms per agent call "
          f"({len(compacting)} compactions)")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "sessions": a.sessions, "turns": a.turns, "window": a.window, "calls": n,
            "compactions": len(compacting),
            "latency_ms": {name: {"p50": pct(xs, .5), "p99": pct(xs, .99), "n": len(xs)}
                           for name, xs in rows},
            "added_ms": added, "proxy_cpu_ms_per_call": 1000 * cpu / max(1, n),
            "median_direct_ms": 1000 * statistics.median(d_all)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
