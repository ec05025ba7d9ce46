"""Fault matrix: the summarizer's provider misbehaves; the agent loop still completes
every turn, retries stay within the policy's bounds, and every fault is in the sink."""

from __future__ import annotations

import json

import pytest

from compactor.testing import MESSAGES_PATH, Fault, LoopbackServer, Reply

from adapters_support import (AGENT_MODEL, API_KEY, FAST_RETRY, PLAN, SUMMARY_MODEL, WINDOW,
                              Harness, run_agent_loop)

TURNS = 28

#: (fault, retried?, status or kind the records must show)
TRANSIENT = {
    "429_retry_after": (Fault.rate_limited(retry_after=0.05), 429),
    "529_overloaded": (Fault.overloaded(), 529),
    "500": (Fault.server_error(500), 500),
    "connection_reset": (Fault.reset(), "connection"),
    "timeout": (Fault.hang(5.0), "timeout"),
}
PERMANENT = {
    "malformed_body": (Fault.malformed(), "malformed"),
    "empty_summary": (Fault.empty_content(), "no text"),
    "overlong_summary": (Fault.reply_with(Reply(text="word " * 4000)), "longer than its input"),
}


def _summary_requests(server: LoopbackServer):
    return server.requests_to(MESSAGES_PATH, model=SUMMARY_MODEL)


def _assert_common(server: LoopbackServer, h: Harness, stats) -> None:
    assert stats.turns == TURNS
    assert server.violations == []
    assert len(server.requests_to(MESSAGES_PATH, model=AGENT_MODEL)) == TURNS
    assert h.sink.of("compaction")
    assert API_KEY not in json.dumps(h.sink.records)


@pytest.mark.parametrize("name", sorted(TRANSIENT))
async def test_transient_fault_is_retried_within_bounds(name: str, server: LoopbackServer,
                                                        harness: Harness):
    """Two consecutive transient failures of the summary call are retried (two
    summarizer_retry records with the status or kind and the delay), the third attempt
    succeeds, and no fallback is needed."""
    fault, expect = TRANSIENT[name]
    server.enqueue(fault, fault, path=MESSAGES_PATH, model=SUMMARY_MODEL)
    stats = await run_agent_loop(harness.client, TURNS)
    _assert_common(server, harness, stats)
    retries = harness.sink.of("summarizer_retry")
    assert [r["attempt"] for r in retries] == [1, 2]
    key = "status" if isinstance(expect, int) else "kind"
    assert all(r[key] == expect and r["max_attempts"] == FAST_RETRY.attempts for r in retries)
    assert harness.sink.of("summarizer_fallback") == []
    if name == "429_retry_after":
        assert all(r["retry_after_s"] == pytest.approx(0.05) and r["delay_s"] >= 0.05
                   for r in retries)
    compactions = harness.sink.of("compaction")
    # one compaction needed 3 attempts, every other one 1
    assert len(_summary_requests(server)) == len(compactions) + 2
    assert {c["summarizer"] for c in compactions} == {harness.compactor.summarizer.name}


@pytest.mark.parametrize("name", sorted(PERMANENT))
async def test_unusable_response_falls_back_without_retry(name: str, server: LoopbackServer,
                                                          harness: Harness):
    """A malformed body, an empty summary or one longer than its input is a failure, not
    content: no retry, a summarizer_fallback record naming it, and the offline
    summarizer writes that compaction's summary."""
    fault, expect = PERMANENT[name]
    server.enqueue(fault, path=MESSAGES_PATH, model=SUMMARY_MODEL)
    stats = await run_agent_loop(harness.client, TURNS)
    _assert_common(server, harness, stats)
    assert harness.sink.of("summarizer_retry") == []
    falls = harness.sink.of("summarizer_fallback")
    # the chain's step (naming the fault), then the compactor's step to the offline summarizer
    assert len(falls) == 2 and expect in falls[0]["error"]
    assert falls[0]["summarizer"] == harness.summarizer.name
    assert falls[1]["summarizer"] == harness.compactor.summarizer.name
    assert falls[1]["fallback"] == "extractive"
    assert "word word word" not in json.dumps([c.get("summary") for c in harness.sink.records])
    compactions = harness.sink.of("compaction")
    assert compactions[0]["summarizer"] != harness.compactor.summarizer.name
    assert len(_summary_requests(server)) == len(compactions)
    for r in stats.history:   # the over-long "summary" never became content
        assert "word word word word" not in json.dumps(r)


async def test_summarizer_down_for_the_whole_run(server: LoopbackServer, harness: Harness):
    """Every summary call fails (503): each compaction makes exactly ``attempts`` calls,
    records attempts - 1 retries and a fallback, and the offline summarizer takes over;
    the agent's calls all succeed."""
    server.enqueue(Fault.server_error(503), path=MESSAGES_PATH, model=SUMMARY_MODEL, times=None)
    stats = await run_agent_loop(harness.client, TURNS)
    _assert_common(server, harness, stats)
    compactions = harness.sink.of("compaction")
    n = len(compactions)
    assert len(_summary_requests(server)) == FAST_RETRY.attempts * n
    assert len(harness.sink.of("summarizer_retry")) == (FAST_RETRY.attempts - 1) * n
    falls = harness.sink.of("summarizer_fallback")
    assert len(falls) == 2 * n   # chain -> compactor fallback, then compactor -> extractive
    assert all(c["summarizer"] == "extractive" for c in compactions)


async def test_deadline_bounds_the_retries(server: LoopbackServer, raw_client, tiktoken_counter):
    """With a deadline shorter than the server's retry-after, no retry is attempted past
    it: the summarizer gives up after one call."""
    from compactor import MemorySink
    from compactor.adapters import RetryPolicy, resilient_compactor
    from compactor.adapters.anthropic_sdk import AnthropicSummarizer, CompactingAnthropic

    sink = MemorySink()
    policy = RetryPolicy(attempts=5, deadline_s=0.5, backoff_s=0.001, retry_after_max_s=5.0)
    summ = AnthropicSummarizer(raw_client, model=SUMMARY_MODEL, retry=policy, sink=sink)
    comp = resilient_compactor(summ, sink=sink, counter=tiktoken_counter, config=PLAN)
    client = CompactingAnthropic(raw_client, comp, window=WINDOW)
    server.enqueue(Fault.rate_limited(retry_after=3), path=MESSAGES_PATH, model=SUMMARY_MODEL,
                   times=None)
    stats = await run_agent_loop(client, TURNS)
    assert stats.turns == TURNS and server.violations == []
    n = len(sink.of("compaction"))
    assert n >= 1 and len(_summary_requests(server)) == n
    assert sink.of("summarizer_retry") == []
