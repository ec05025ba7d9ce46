"""The Anthropic wrapper keeps the agent working: histories holding the SDK's own content
block objects are compacted, a broken or hanging count_tokens never fails the agent's
call (bounded by count_timeout), and a client made by with_options keeps compacting."""

from __future__ import annotations

import time

import anthropic

from compactor import MemorySink, MessageCompactor
from compactor.adapters.anthropic_sdk import CompactingAnthropic
from compactor.testing import COUNT_TOKENS_PATH, MESSAGES_PATH, Fault, LoopbackServer, Reply

from adapters_support import AGENT_MODEL, API_KEY, SUMMARY_MODEL, SYSTEM, TOOLS


def _tool_agent(req) -> Reply | str:
    """Calls a tool until it sees its result, then answers in text."""
    if req.model == SUMMARY_MODEL:
        return "Goals: read the files. Identifiers: src/a.py."
    last = req.json["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        return Reply(text=f"Read it (step {req.seq}).")
    return Reply(text="Let me look.", tool_uses=(("read_file", {"path": f"src/m{req.seq}.py"}),))


async def test_history_holding_the_sdks_own_content_blocks_is_compacted(tiktoken_counter):
    """The SDK's agent-loop pattern, ``{"role": "assistant", "content": response.content}``
    (pydantic blocks, not dicts), is compacted with its tool pairs intact instead of being
    rejected as an invalid history."""
    with LoopbackServer(_tool_agent, max_context_tokens=3000) as srv:
        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key=API_KEY, timeout=5.0)
        sink = MemorySink()
        comp = MessageCompactor(counter=tiktoken_counter, sink=sink)
        client = CompactingAnthropic(raw, comp, window=3000)
        history: list[dict] = [{"role": "user", "content": "TICKET-1: read the sources."}]
        for t in range(30):
            resp = await client.messages.create(model=AGENT_MODEL, max_tokens=200,
                                                system=SYSTEM, tools=TOOLS, messages=history)
            history.append({"role": "assistant", "content": resp.content})
            uses = [b for b in resp.content if b.type == "tool_use"]
            history.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": u.id, "content": "code " * 60}
                for u in uses] or f"step {t}"})
        await raw.close()
        assert srv.violations == []
        assert sink.of("compaction")
        assert len(srv.requests_to(MESSAGES_PATH)) == 30


async def test_a_broken_count_tokens_never_fails_the_agents_call(tiktoken_counter):
    """count_tokens is an optional refinement: a body that is not JSON keeps the estimate,
    is tried once (no SDK retries), and the agent's call goes through."""
    with LoopbackServer(max_context_tokens=3000) as srv:
        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key=API_KEY, timeout=5.0)
        client = CompactingAnthropic(raw, MessageCompactor(counter=tiktoken_counter),
                                     window=3000, exact_band=0.99)
        srv.enqueue(Fault.malformed(), path=COUNT_TOKENS_PATH)
        resp = await client.messages.create(model=AGENT_MODEL, max_tokens=200,
                                            messages=[{"role": "user", "content": "hi " * 100}])
        srv.enqueue(Fault.server_error(500), path=COUNT_TOKENS_PATH)
        await client.messages.create(model=AGENT_MODEL, max_tokens=200,
                                     messages=[{"role": "user", "content": "hi " * 100}])
        await raw.close()
        assert isinstance(resp, anthropic.types.Message)
        assert client.exact_counts == 0
        assert len(srv.requests_to(COUNT_TOKENS_PATH)) == 2


async def test_a_hanging_count_tokens_is_bounded_by_count_timeout(tiktoken_counter):
    """A count_tokens that stalls costs at most ``count_timeout_s``, not the client's
    (default ten-minute) timeout times its retries."""
    with LoopbackServer(max_context_tokens=3000) as srv:
        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key=API_KEY)  # 600 s default
        client = CompactingAnthropic(raw, MessageCompactor(counter=tiktoken_counter),
                                     window=3000, exact_band=0.99, count_timeout_s=0.3)
        srv.enqueue(Fault.hang(5.0), path=COUNT_TOKENS_PATH)
        t0 = time.monotonic()
        await client.messages.create(model=AGENT_MODEL, max_tokens=200,
                                     messages=[{"role": "user", "content": "hi " * 100}])
        elapsed = time.monotonic() - t0
        await raw.close()
    assert elapsed < 2.0
    assert len(srv.requests_to(COUNT_TOKENS_PATH)) == 1


async def test_with_options_keeps_compacting(tiktoken_counter):
    """``client.with_options(...)`` returns a wrapper that still compacts (and shares the
    calibrator), not the raw SDK client."""
    with LoopbackServer() as srv:
        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key=API_KEY, timeout=5.0)
        client = CompactingAnthropic(raw, MessageCompactor(counter=tiktoken_counter))
        twin = client.with_options(timeout=3.0, max_retries=1)
        assert isinstance(twin, CompactingAnthropic)
        assert twin.calibrator is client.calibrator and twin.compactor is client.compactor
        msgs = [{"role": "user", "content": "keep me", "compactor_pin": True}]
        await twin.messages.create(model=AGENT_MODEL, max_tokens=50, messages=msgs)
        await raw.close()
        assert srv.violations == []
        assert srv.requests_to(MESSAGES_PATH)[-1].json["messages"] == [
            {"role": "user", "content": "keep me"}]
