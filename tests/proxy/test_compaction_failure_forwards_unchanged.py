"""A compaction that fails never fails the agent's call: the request goes upstream as the
very bytes the client sent, the upstream's answer comes back, and a ``proxy_fallback``
ledger record says why -- with any credential the error text carried masked."""

from __future__ import annotations

import json
from typing import Any

import httpx

from proxy_helpers import RecordingRelay, served
from compactor import MemorySink, MessageCompactor
from compactor.testing import LoopbackServer

KEY = "sk-ant-api03-fallback-Ab1Cd2Ef3Gh4Ij5Kl"
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 32, "system": "be brief",
        "messages": [{"role": "user", "content": "hello"}]}


class Broken(MessageCompactor):
    """A compactor whose every call fails, with the caller's key in the error text."""

    async def compact_if_needed(self, *a: Any, **k: Any) -> Any:
        raise RuntimeError(f"disk on fire while holding x-api-key: {KEY}")


def test_failing_compactor_forwards_the_original_bytes() -> None:
    """The client's body bytes reach the upstream unchanged, the answer is the
    upstream's, and the fallback record names the error without the key."""
    sink = MemorySink()
    raw = json.dumps(BODY, indent=1).encode()      # unusual spacing: any re-encoding shows
    with LoopbackServer() as up, RecordingRelay(up.url) as relay, \
            served(relay.url, compactor=Broken(), sink=sink) as proxy:
        r = httpx.post(proxy.url + "/v1/messages", content=raw, trust_env=False,
                       headers={"x-api-key": KEY, "content-type": "application/json"})
        assert r.status_code == 200 and r.json()["type"] == "message"
        assert [x.body for x in relay.received] == [raw]
        assert proxy.proxy.stats.fallbacks == 1
    [rec] = sink.of("proxy_fallback")
    assert "RuntimeError" in rec["error"] and "disk on fire" in rec["error"]
    assert KEY not in json.dumps(sink.records)


def test_invalid_history_goes_upstream_and_its_400_comes_back() -> None:
    """A history the compactor rejects (a tool_result without its tool_use) is forwarded
    as sent; the upstream's own 400 reaches the client."""
    sink = MemorySink()
    bad = {**BODY, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_missing", "content": "x"}]}]}
    with LoopbackServer() as up, served(up.url, sink=sink) as proxy:
        r = httpx.post(proxy.url + "/v1/messages", json=bad, trust_env=False,
                       headers={"x-api-key": KEY})
        direct = httpx.post(up.url + "/v1/messages", json=bad, trust_env=False,
                            headers={"x-api-key": KEY})
        assert r.status_code == direct.status_code == 400
        assert r.content == direct.content
        assert up.requests[0].json == bad
    assert sink.of("proxy_fallback")[0]["error"].startswith("InvalidHistoryError")
