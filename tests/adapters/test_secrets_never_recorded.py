"""API keys never reach reprs or records: the call context hides its secrets, and a key a
provider echoes in an error body is redacted before any sink sees it."""

from __future__ import annotations

import json

import anthropic

from compactor import MemorySink, MessageCompactor, PlanConfig
from compactor.adapters._resilience import CallContext, RetryPolicy
from compactor.adapters.anthropic_sdk import AnthropicSummarizer
from compactor.adapters.openai_http import OpenAIChatSummarizer
from compactor.testing import Fault, LoopbackServer

from adapters_support import API_KEY, SUMMARY_MODEL

ONE_SHOT = RetryPolicy(attempts=1, deadline_s=5.0)


def test_call_context_repr_hides_secrets():
    """The call context (built in every summarize, so shown in tracebacks with locals)
    never prints the API key."""
    ctx = CallContext("s", "m", secrets=(API_KEY,))
    assert API_KEY not in repr(ctx)


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
