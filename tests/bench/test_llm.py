"""The LLM summarizer of ours+llm: configuration from the environment and the wire calls."""

from __future__ import annotations

import asyncio
import json

import httpx

from compactor import Format, HeuristicCounter, SummaryRequest
from compactor.bench._llm import NOT_CONFIGURED, LLMSummarizer, llm_from_env


def test_not_configured_is_skipped_with_a_note() -> None:
    """Without ANTHROPIC_API_KEY or OPENAI_BASE_URL there is no summarizer, and the note
    says what to set."""
    s, note = llm_from_env({})
    assert s is None and note == NOT_CONFIGURED and "ANTHROPIC_API_KEY" in note


def test_env_picks_the_provider() -> None:
    """An Anthropic key wins; an OpenAI-compatible base URL is used otherwise."""
    s, _ = llm_from_env({"ANTHROPIC_API_KEY": "k", "OPENAI_BASE_URL": "http://x/v1"})
    assert s is not None and s.provider == "anthropic"
    s, _ = llm_from_env({"OPENAI_BASE_URL": "http://x/v1", "COMPACTOR_BENCH_LLM_MODEL": "m"})
    assert s is not None and (s.provider, s.model) == ("openai", "m")


def test_anthropic_call_and_usage() -> None:
    """The summarizer posts the span to /v1/messages and returns the text; usage is recorded."""
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["body"] = json.loads(request.content)
        return httpx.Response(200, json={"content": [{"type": "text", "text": "Summary: R1."}],
                                         "usage": {"input_tokens": 50, "output_tokens": 5}})

    s = LLMSummarizer("anthropic", "https://api.example", "claude-x", "key",
                      transport=httpx.MockTransport(handler))
    req = SummaryRequest([{"role": "user", "content": "Reservation R1 please"}],
                         Format.ANTHROPIC, None, 100, HeuristicCounter())
    assert asyncio.run(s.summarize(req)) == "Summary: R1."
    assert seen["url"] == "https://api.example/v1/messages"
    assert "Reservation R1" in seen["body"]["messages"][0]["content"]
    assert req.usage == [{"model": "claude-x", "input_tokens": 50, "output_tokens": 5}]
