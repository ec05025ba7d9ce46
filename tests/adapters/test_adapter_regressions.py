"""Regressions found in review: each test pins one behaviour that used to be wrong."""

from __future__ import annotations

import json
import time

import anthropic

from compactor import MemorySink, MessageCompactor, PlanConfig
from compactor.adapters import parse_retry_after
from compactor.adapters._caching import MAX_CACHE_BREAKPOINTS, cache_breakpoints, mark_summary
from compactor.adapters._resilience import CallContext, RetryPolicy
from compactor.adapters.anthropic_sdk import AnthropicSummarizer, CompactingAnthropic
from compactor.adapters.openai_http import OpenAIChatSummarizer
from compactor.testing import COUNT_TOKENS_PATH, MESSAGES_PATH, Fault, LoopbackServer, Reply

from adapters_support import AGENT_MODEL, API_KEY, FAST_RETRY, SUMMARY_MODEL, SYSTEM, TOOLS

ONE_SHOT = RetryPolicy(attempts=1, deadline_s=5.0)


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


def test_breakpoints_inside_tool_results_count_against_the_limit():
    """cache_control markers on blocks nested in a tool_result count, so the summary's
    breakpoint is not added as a fifth."""
    summary = {"role": "user", "content": "<conversation_summary>\nearlier\n</conversation_summary>"}
    result = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": f"t{i}",
         "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}
        for i in range(3)]}
    body = {"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [summary, result]}
    assert cache_breakpoints(body) == 4
    out = mark_summary(body["messages"], body)
    assert cache_breakpoints({**body, "messages": out}) <= MAX_CACHE_BREAKPOINTS
    assert out[0] is summary


def test_call_context_repr_hides_secrets():
    """The call context (built in every summarize, so shown in tracebacks with locals)
    never prints the API key."""
    ctx = CallContext("s", "m", secrets=(API_KEY,))
    assert API_KEY not in repr(ctx)


def test_http_date_without_a_zone_is_gmt(monkeypatch):
    """An HTTP date written with ``-0000`` (no zone) is read as GMT, whatever the local
    time zone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        now = 1_700_000_000.0
        ra = time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime(now + 30))
        assert 29 <= parse_retry_after({"retry-after": ra}, now=now) <= 31
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def test_echoed_key_in_an_error_body_never_reaches_the_sink(tiktoken_counter):
    """A summarizer given straight to MessageCompactor (no FallbackChain to scrub) whose
    provider echoes the key in an error body records no key: the error is redacted when
    it is made."""
    key = "gsk-live-9f8e7d6c5b4a"   # not shaped like sk-..., so only the exact scrub finds it
    sink = MemorySink()
    with LoopbackServer() as srv:
        srv.enqueue(Fault.error(401, message=f"invalid api key {key}"), times=None)
        o = OpenAIChatSummarizer(f"{srv.url}/v1", "gpt-4o-mini", api_key=key, retry=ONE_SHOT)
        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key=key, timeout=5.0)
        a = AnthropicSummarizer(raw, model=SUMMARY_MODEL, retry=ONE_SHOT)
        hist = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 40}
                for i in range(41)]
        for summ in (o, a):
            comp = MessageCompactor(summarizer=summ, sink=sink, counter=tiktoken_counter,
                                    window=2000, config=PlanConfig(max_summary_tokens=200))
            r = await comp.compact_if_needed(hist, model="gpt-4o-mini")
            assert r.compacted
        await o.aclose()
        await raw.close()
    fallbacks = sink.of("summarizer_fallback")
    assert len(fallbacks) >= 2 and all("401" in f["error"] for f in fallbacks)
    assert key not in json.dumps(sink.records)
