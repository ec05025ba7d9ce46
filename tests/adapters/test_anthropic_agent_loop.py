"""The real anthropic SDK, through the compacting wrapper, against the loopback server."""

from __future__ import annotations

import json

import anthropic
from anthropic.lib.streaming import AsyncMessageStream

from compactor.testing import MESSAGES_PATH, LoopbackServer

from adapters_support import AGENT_MODEL, API_KEY, MAX_TOKENS, SUMMARY_MODEL, SYSTEM, TOOLS, Harness, run_agent_loop


async def test_200_turn_agent_loop_sends_only_valid_requests(server: LoopbackServer, harness: Harness):
    """200 model calls with tool turns in a 6k window: the server (which validates every
    request, and rejects any over its context limit) sees no violation, compactions
    happen, and every response is the SDK's own Message."""
    stats = await run_agent_loop(harness.client, 200, stream_every=10)
    assert server.violations == []
    assert stats.turns == 200
    assert all(isinstance(r, anthropic.types.Message) for r in stats.responses)
    compactions = harness.sink.of("compaction")
    assert len(compactions) >= 5
    assert {c["summarizer"] for c in compactions} == {harness.compactor.summarizer.name}
    agent_calls = server.requests_to(MESSAGES_PATH, model=AGENT_MODEL)
    assert len(agent_calls) == 200 and all(r.status == 200 for r in agent_calls)
    summary_calls = server.requests_to(MESSAGES_PATH, model=SUMMARY_MODEL)
    assert len(summary_calls) >= len(compactions)
    # the summarizer's usage is priced into each compaction record
    assert all(c["summarizer_input_tokens"] > 0 and c["cost_usd"] > 0 for c in compactions)


async def test_summary_message_carries_a_cache_breakpoint_and_is_read_from_cache(
        server: LoopbackServer, harness: Harness):
    """After a compaction the summary message is sent with cache_control, and the next
    request with the same prefix is served from the (simulated) prompt cache."""
    stats = await run_agent_loop(harness.client, 40)
    marked = [r for r in server.requests_to(MESSAGES_PATH, model=AGENT_MODEL)
              if any(isinstance(b, dict) and b.get("cache_control")
                     for b in (r.json["messages"][0]["content"]
                               if isinstance(r.json["messages"][0]["content"], list) else []))]
    assert marked, "no request carried the summary breakpoint"
    first = marked[0].json["messages"][0]["content"][-1]
    assert first["text"].startswith("<conversation_summary>")
    reads = [r.usage.cache_read_input_tokens for r in stats.responses]
    assert any(n and n > 0 for n in reads)
    assert server.violations == []


async def test_every_other_argument_passes_through_unchanged(server: LoopbackServer, harness: Harness):
    """Arguments other than messages reach the server as given, and the pin flag the
    compactor honours is stripped before sending."""
    extra = dict(metadata={"user_id": "u-42"}, tool_choice={"type": "auto"},
                 stop_sequences=["END"], service_tier="auto")
    msgs = [{"role": "user", "content": "keep me", "compactor_pin": True}]
    resp = await harness.client.messages.create(model=AGENT_MODEL, max_tokens=MAX_TOKENS,
                                                system=SYSTEM, tools=TOOLS, messages=msgs,
                                                extra_headers={"x-trace-id": "t-1"}, **extra)
    assert isinstance(resp, anthropic.types.Message)
    rec = server.requests_to(MESSAGES_PATH)[-1]
    body = rec.json
    assert rec.headers["x-trace-id"] == "t-1"
    for k, v in extra.items():
        assert body[k] == v
    assert body["system"] == SYSTEM and body["tools"] == TOOLS
    assert body["messages"] == [{"role": "user", "content": "keep me"}]
    assert server.violations == []


async def test_streaming_returns_the_sdk_stream_objects(server: LoopbackServer, harness: Harness):
    """messages.stream yields the SDK's AsyncMessageStream, and create(stream=True) the
    SDK's AsyncStream of raw events, both after compaction."""
    msgs = [{"role": "user", "content": "stream please"}]
    async with harness.client.messages.stream(model=AGENT_MODEL, max_tokens=MAX_TOKENS,
                                              messages=msgs) as stream:
        assert isinstance(stream, AsyncMessageStream)
        text = await stream.get_final_text()
    assert text.startswith("Let me look")
    raw = await harness.client.messages.create(model=AGENT_MODEL, max_tokens=MAX_TOKENS,
                                               messages=msgs, stream=True)
    assert isinstance(raw, anthropic.AsyncStream)
    kinds = [ev.type async for ev in raw]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert server.violations == []


async def test_other_attributes_are_the_wrapped_clients(raw_client, harness: Harness):
    """count_tokens, models and options come from the wrapped client untouched."""
    n = await harness.client.messages.count_tokens(model=AGENT_MODEL,
                                                   messages=[{"role": "user", "content": "hi"}])
    assert n.input_tokens > 0
    assert harness.client.api_key == API_KEY
    assert harness.client.models is raw_client.models


async def test_no_credentials_in_any_record(server: LoopbackServer, harness: Harness):
    """The API key never reaches the sink, and the server records it only as redacted."""
    await run_agent_loop(harness.client, 30)
    dumped = json.dumps(harness.sink.records)
    assert API_KEY not in dumped
    assert all(r.had_credentials for r in server.requests)
    assert not any(API_KEY in v for r in server.requests for v in r.headers.values())
