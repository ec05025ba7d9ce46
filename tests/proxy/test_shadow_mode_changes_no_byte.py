"""``--shadow`` forwards every request byte for byte and records what compaction would
have done. The same scripted agents run once straight to the upstream and once through a
shadow proxy (each time against a fresh loopback server, so its generated ids repeat); a
relay in front of the loopback server records the raw bytes it receives. Control: the
same run through a compacting proxy does change requests."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy_agents import anthropic_agent, openai_agent, tool_model
from proxy_helpers import RecordingRelay, served
from compactor import HeuristicCounter, MemorySink, MessageCompactor
from compactor.testing import LoopbackServer

KEY = "sk-ant-api03-shadowtest-Pq4Wn7Xc2Vb9Mz5Lk1"
TURNS = 14


async def agents(url: str) -> None:
    """One agent of each kind and style, one after the other (a fixed request order)."""
    await anthropic_agent(url, KEY, 1, TURNS, stream=False)
    await anthropic_agent(url, KEY, 2, TURNS, stream=True)
    await openai_agent(url + "/v1", KEY, 3, TURNS, stream=False)
    await openai_agent(url + "/v1", KEY, 4, TURNS, stream=True)


def run(through: str | None, **settings: Any) -> tuple[list[Any], MemorySink]:
    """The requests the upstream received when the agents call it directly
    (``through=None``) or through a proxy with ``settings``."""
    sink = MemorySink()
    with LoopbackServer(tool_model) as up, RecordingRelay(up.url) as relay:
        if through is None:
            asyncio.run(agents(relay.url))
        else:
            compactor = MessageCompactor(window=2500, counter=HeuristicCounter())
            with served(relay.url, compactor=compactor, sink=sink, **settings) as proxy:
                asyncio.run(agents(proxy.url))
        assert up.violations == []
        return relay.received, sink


def test_shadow_proxy_forwards_every_request_byte_for_byte() -> None:
    """Through a shadow proxy the upstream receives the same paths, credentials and body
    bytes as without it, while proxy_shadow records say compaction would have happened."""
    direct, _ = run(None)
    shadow, sink = run("proxy", shadow=True)
    compacting, _ = run("proxy")
    assert len(direct) == len(shadow) == len(compacting) == 4 * TURNS
    for d, s in zip(direct, shadow):
        assert s.path == d.path
        assert s.body == d.body
        for h in ("x-api-key", "authorization", "anthropic-version", "content-type"):
            assert s.headers.get(h) == d.headers.get(h)
    records = sink.of("proxy_shadow")
    assert len(records) == 4 * TURNS
    would = [r for r in records if r["would_compact"]]
    assert would and all(r["tokens_saved"] > 0 for r in would)
    assert all(r["input_cost_saved_usd"] is not None for r in would)
    assert not sink.of("compaction")
    # control: a compacting proxy changes some requests (so the comparison can fail)
    assert any(c.body != d.body for c, d in zip(compacting, direct))
