"""Real ``anthropic`` and ``openai`` SDK agents -> ``compactor proxy`` (a child process) ->
the loopback provider server: many concurrent tool-using sessions, a third streamed.

Pinned: 0 provider-rule violations at the upstream (its window is smaller than the
uncompacted histories, so a request the proxy failed to compact is a violation), 0 broken
streams, every session compacted at least once and restorable from the store exactly as
its client last sent it, and the API keys in no file under the store or ledger folders and
in no line the proxy printed.

Size: ``PROXY_SESSIONS`` x ``PROXY_TURNS``, default 20 x 40 (the issue's 50 x 40 took 58 s
of driving, 70 s in all, on this 2-core machine: over the suite's 60 s budget for one
test; ``PROXY_SESSIONS=50`` runs it, and ``benchmarks/bench_proxy.py`` times the same
drivers at full size).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx

from proxy_agents import anthropic_agent, canonical, openai_agent, tool_model
from compactor import SessionStore
from compactor.ledger import read_records
from compactor.testing import LoopbackServer

SESSIONS = int(os.environ.get("PROXY_SESSIONS", "20"))
TURNS = int(os.environ.get("PROXY_TURNS", "40"))
ANTHROPIC_KEY = "sk-ant-api03-proxytest-7Qm2ZrX9vLk4Np8Ws1Jd"
OPENAI_KEY = "sk-proj-proxytest-Hc5Tb3Ye6Ua0Oi9Pq2Rf"
#: The loopback server's window, its tokens: an uncompacted 40-turn history is about 15k.
UPSTREAM_WINDOW = 9000


def config(tmp: Path) -> Path:
    """A compactor.toml with a small window (heuristic counter)."""
    p = tmp / "compactor.toml"
    p.write_text('[compactor]\nwindow = 4000\ncounter = "heuristic"\n', encoding="utf-8")
    return p


async def drive(url: str) -> list:
    """All sessions at once: even ones on the anthropic SDK (named by header), odd ones on
    the openai SDK (named by content); every third one streamed."""
    jobs = []
    for i in range(SESSIONS):
        stream = i % 3 == 0
        if i % 2 == 0:
            jobs.append(anthropic_agent(url, ANTHROPIC_KEY, i, TURNS, stream=stream,
                                        headers={"x-compactor-session": f"agent-{i}"}))
        else:
            jobs.append(openai_agent(url + "/v1", OPENAI_KEY, i, TURNS, stream=stream))
    return await asyncio.gather(*jobs)


def test_concurrent_sdk_sessions_compact_and_restore_as_sent(tmp_path: Path, proxy_process) -> None:
    """Concurrent SDK sessions through the proxy: valid upstream requests, whole streams,
    >= 1 compaction each, restorable byte for byte, no key in any file or log."""
    store, ledger = tmp_path / "store", tmp_path / "ledger" / "ledger.jsonl"
    with LoopbackServer(tool_model, max_context_tokens=UPSTREAM_WINDOW) as up:
        p = proxy_process("--anthropic-upstream", up.url, "--openai-upstream", up.url + "/v1",
                          "--config", str(config(tmp_path)), "--store", str(store),
                          "--ledger", str(ledger))
        t0 = time.monotonic()
        runs = asyncio.run(drive(p.url))
        elapsed = time.monotonic() - t0
        status = httpx.get(p.url + "/compactor/status", timeout=10, trust_env=False).json()
        assert p.stop() == 0
        requests = up.requests
    print(f"{SESSIONS} sessions x {TURNS} turns in {elapsed:.1f} s")
    assert up.violations == []
    assert len([r for r in requests if r.status == 200]) == SESSIONS * TURNS
    assert status["broken_streams"] == 0 and status["fallbacks"] == 0
    assert status["upstream_errors"] == 0
    streamed = [r for r in runs if r.stream]
    assert len(streamed) == (SESSIONS + 2) // 3
    assert all(len(r.latencies) == TURNS for r in runs)

    archive = SessionStore(store)
    ids = archive.sessions()
    assert len(ids) == SESSIONS
    restored = {canonical(archive.restore(sid)[0]): sid for sid in ids}
    compactions: dict[str, int] = {}
    for rec in read_records(ledger):
        if rec.get("event") == "compaction":
            compactions[rec["session_id"]] = compactions.get(rec["session_id"], 0) + 1
    for run in runs:
        sid = restored[canonical(run.history[0])]
        last_sent = json.loads(run.sent[-1])["messages"]
        assert canonical(archive.restore(sid)) == canonical(last_sent), sid
        # what the client sent last is its history before the last reply
        assert canonical(last_sent) == canonical(run.history[:-2])
        assert compactions.get(sid, 0) >= 1, sid
        if run.kind == "anthropic":
            assert sid == f"agent-{run.session}~" + sid.rsplit("~", 1)[1]

    keys = (ANTHROPIC_KEY.encode(), OPENAI_KEY.encode())
    files = [f for d in (store, ledger.parent) for f in d.rglob("*") if f.is_file()]
    assert files
    for f in files:
        data = f.read_bytes()
        assert not any(k in data for k in keys), f
    logs = p.stderr() + "".join(p.drain())
    assert not any(k.decode() in logs for k in keys)
