"""The OpenAI-compatible adapter (httpx only) against the loopback server's
/v1/chat/completions."""

from __future__ import annotations

import json

import httpx
import pytest

from compactor import ConfigError, MemorySink, MessageCompactor, PlanConfig
from compactor.adapters import FallbackChain, RetryPolicy, resilient_compactor
from compactor.adapters.openai_http import OpenAIChatSummarizer, compacting_router
from compactor.testing import CHAT_PATH, Fault, LoopbackServer

from adapters_support import FAST_RETRY

KEY = "sk-openai-test-abcdef123456"


def _history(turns: int) -> list[dict]:
    h: list[dict] = [{"role": "system", "content": "You are a travel agent."}]
    for t in range(turns):
        h.append({"role": "user", "content": f"Book flight UA{1000 + t} for order ORD-{t}. " * 6})
        h.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{t}", "type": "function",
             "function": {"name": "book", "arguments": json.dumps({"flight": f"UA{1000 + t}"})}}]})
        h.append({"role": "tool", "tool_call_id": f"call_{t}",
                  "content": f"booked UA{1000 + t}, seat {t}A, confirmation CNF{t:05d}. " * 5})
        h.append({"role": "assistant", "content": f"Booked UA{1000 + t}."})
    h.append({"role": "user", "content": "What is next?"})
    return h


async def _call_model(base: str, messages, **kw):
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/v1/chat/completions", json={"messages": messages, **kw})
        r.raise_for_status()
        return r.json()


async def test_router_compacts_before_routing_and_passes_kwargs(tiktoken_counter):
    """The wrapped route receives a compacted, valid history (the server validates it)
    and every keyword unchanged; it returns what the route returns."""
    sink = MemorySink()
    with LoopbackServer(lambda r: "Here is the summary: bookings UA1000..UA1029.") as srv:
        summ = OpenAIChatSummarizer(f"{srv.url}/v1", "gpt-4o-mini", api_key=KEY, sink=sink,
                                    retry=FAST_RETRY)
        comp = resilient_compactor(summ, sink=sink, counter=tiktoken_counter, window=4000)
        seen = {}

        async def route(messages, **kw):
            seen.update(kw)
            return await _call_model(srv.url, messages, **kw)

        wrapped = compacting_router(route, comp, session_id="s1")
        out = await wrapped(_history(30), model="gpt-4o", max_tokens=300, temperature=0.2)
        await summ.aclose()
        assert out["object"] == "chat.completion"
        assert seen == {"model": "gpt-4o", "max_tokens": 300, "temperature": 0.2}
        assert wrapped.last_result.compacted
        assert srv.violations == []
        summary_calls = srv.requests_to(CHAT_PATH, model="gpt-4o-mini")
        assert summary_calls and all(r.headers["authorization"] == "[REDACTED]"
                                     for r in summary_calls)
    rec = sink.of("compaction")[0]
    assert rec["summarizer_input_tokens"] > 0 and rec["cost_usd"] > 0
    assert KEY not in json.dumps(sink.records)


async def test_openai_summarizer_retries_429_then_succeeds(tiktoken_counter):
    """A 429 with retry-after is retried after at least that long; the record carries the
    status, attempt and delay and no credential."""
    sink = MemorySink()
    with LoopbackServer(lambda r: "Summary: UA1000 booked.") as srv:
        srv.enqueue(Fault.rate_limited(retry_after=0.03), path=CHAT_PATH)
        summ = OpenAIChatSummarizer(f"{srv.url}/v1/", "gpt-4o-mini", api_key=KEY, sink=sink,
                                    retry=FAST_RETRY)
        comp = MessageCompactor(summarizer=summ, counter=tiktoken_counter, sink=sink)
        r = await comp.compact_if_needed(_history(12), model="gpt-4o", window=3000, force=True)
        await summ.aclose()
    assert r.summarizer == summ.name
    (retry,) = sink.of("summarizer_retry")
    assert retry["status"] == 429 and retry["attempt"] == 1 and retry["delay_s"] >= 0.03
    assert KEY not in json.dumps(sink.records)


@pytest.mark.parametrize("fault", [Fault.malformed(), Fault.empty_content(),
                                   Fault.truncated_stream()], ids=["malformed", "empty", "truncated"])
async def test_openai_unusable_reply_moves_down_the_chain(fault, tiktoken_counter):
    """A malformed, empty or truncated reply from the primary is a failure: the secondary
    endpoint writes the summary and the step is recorded."""
    sink = MemorySink()
    with LoopbackServer(lambda r: f"Summary by {r.model}: UA1000 booked.") as srv:
        srv.enqueue(fault, path=CHAT_PATH, model="primary")
        a = OpenAIChatSummarizer(f"{srv.url}/v1", "primary", retry=RetryPolicy(attempts=1))
        b = OpenAIChatSummarizer(f"{srv.url}/v1", "secondary", retry=RetryPolicy(attempts=1))
        comp = resilient_compactor(a, secondary=b, sink=sink, counter=tiktoken_counter)
        r = await comp.compact_if_needed(_history(12), model="gpt-4o", window=3000, force=True)
        await a.aclose(), await b.aclose()
    assert "Summary by secondary" in r.summary
    (fall,) = sink.of("summarizer_fallback")
    assert fall["summarizer"] == a.name and fall["fallback"] == b.name


def test_bad_configuration_names_the_field():
    """A base URL without a scheme, an empty model or a prompt without {transcript} is a
    ConfigError naming the field."""
    for kwargs, field in ((dict(base_url="localhost:8000", model="m"), "base_url"),
                          (dict(base_url="http://x/v1", model=""), "model"),
                          (dict(base_url="http://x/v1", model="m", prompt="no slot"), "prompt"),
                          (dict(base_url="http://x/v1", model="m", timeout_s=0), "timeout_s")):
        with pytest.raises(ConfigError) as e:
            OpenAIChatSummarizer(**kwargs)
        assert e.value.field == field
    with pytest.raises(ConfigError) as e:
        FallbackChain()
    assert e.value.field == "summarizers"
    assert "sk-" not in repr(OpenAIChatSummarizer("http://x/v1", "m", api_key=KEY))
