"""The retry policy, retry-after parsing, redaction and concurrent map-reduce."""

from __future__ import annotations

import pytest

from compactor import ConfigError, MemorySink, MessageCompactor, PlanConfig
from compactor.adapters import RetryPolicy, parse_retry_after, redact
from compactor.adapters._resilience import CallContext, ProviderCallError, call_with_retries
from compactor.adapters.anthropic_sdk import AnthropicSummarizer
from compactor.testing import MESSAGES_PATH, Fault, LoopbackServer, http_date

from adapters_support import SUMMARY_MODEL


@pytest.mark.parametrize("field,value", [("attempts", 0), ("deadline_s", 0),
                                         ("backoff_s", -1), ("retry_after_max_s", float("nan"))])
def test_policy_rejects_out_of_range_values(field, value):
    """Each out-of-range field raises ConfigError naming it."""
    with pytest.raises(ConfigError) as e:
        RetryPolicy(**{field: value})
    assert e.value.field == field


def test_retry_after_forms():
    """retry-after-ms wins; seconds and HTTP dates are read; garbage is None."""
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert 25 < parse_retry_after({"retry-after": http_date(30)}) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after(None) is None


def test_wait_honours_retry_after_and_caps_backoff():
    """The wait is at least the (capped) retry-after, and the jittered backoff never
    exceeds backoff_max_s."""
    p = RetryPolicy(backoff_s=1.0, backoff_max_s=2.0, retry_after_max_s=5.0)
    assert all(0 <= p.wait_s(n, None) <= 2.0 for n in range(1, 30))
    assert p.wait_s(1, 3.0) >= 3.0
    assert p.wait_s(1, 60.0) == 5.0


def test_redact_removes_keys_and_auth_values():
    """Keys, bearer tokens and key headers are scrubbed from error texts."""
    text = "401 for sk-ant-abc123456789 (Authorization: Bearer tok_abcdef123) x-api-key=secret99"
    out = redact(text, "secret99")
    assert "sk-ant" not in out and "tok_abcdef" not in out and "secret99" not in out


async def test_non_retryable_failure_is_not_retried():
    """A 400 is raised at once: one attempt, no retry record."""
    calls, sink = [], MemorySink()

    async def bad():
        calls.append(1)
        raise ProviderCallError("HTTP 400", status=400)

    with pytest.raises(ProviderCallError):
        await call_with_retries(bad, policy=RetryPolicy(attempts=5, backoff_s=0.001), sink=sink,
                                context=CallContext("x"))
    assert len(calls) == 1 and sink.records == []


async def test_attempts_bound_the_calls():
    """A call that always fails with 503 runs exactly ``attempts`` times and records
    attempts - 1 retries numbered 1..attempts-1."""
    calls, sink = [], MemorySink()

    async def down():
        calls.append(1)
        raise ProviderCallError("HTTP 503", status=503)

    with pytest.raises(ProviderCallError):
        await call_with_retries(down, policy=RetryPolicy(attempts=4, backoff_s=0.001), sink=sink,
                                context=CallContext("x", session_id="s"))
    assert len(calls) == 4
    assert [r["attempt"] for r in sink.of("summarizer_retry")] == [1, 2, 3]
    assert all(r["status"] == 503 and r["session_id"] == "s" for r in sink.records)


async def test_span_larger_than_the_window_is_summarized_concurrently(tiktoken_counter):
    """A span several times the summarizer's input window is split into chunks whose calls are all in
    flight together (every chunk request arrives before the first one is answered), and
    the partial summaries that fit the budget are merged without another call."""
    with LoopbackServer(lambda r: "Part summary: TICKET-1 handled.") as srv:
        import anthropic

        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key="k")
        summ = AnthropicSummarizer(raw, model=SUMMARY_MODEL, input_window=400)
        # the span is what a compaction to 0.4 of the window evicts: several input windows
        comp = MessageCompactor(summarizer=summ, counter=tiktoken_counter, max_concurrency=8,
                                config=PlanConfig(high_watermark=0.7, low_watermark=0.4,
                                                  max_summary_tokens=600))
        history = []
        for t in range(40):
            history.append({"role": "user", "content": f"Request {t}: " + "details " * 30})
            history.append({"role": "assistant", "content": f"Done {t}: " + "result " * 30})
        history.append({"role": "user", "content": "next"})
        srv.enqueue(Fault.latency(0.3), path=MESSAGES_PATH, times=None)
        r = await comp.compact_if_needed(history, model="m", window=4000, force=True)
        await raw.close()
        calls = srv.requests_to(MESSAGES_PATH)
    assert r.summarizer == summ.name and r.summary.startswith("Part summary")
    assert len(calls) >= 4
    first_done = min(c.finished_at for c in calls)
    assert all(c.received_at < first_done for c in calls)


def test_retry_statuses_are_the_documented_set():
    """408, 409, 429 and every 5xx (529 "overloaded" included) are retried; other 4xx
    (400 bad request, 401 auth, 404, 413 too large, 422) are not."""
    from compactor.adapters import RETRY_STATUSES
    from compactor.adapters._resilience import is_retryable_status
    for status in (408, 409, 429, 500, 502, 503, 504, 529, 599):
        assert status in RETRY_STATUSES and is_retryable_status(status)
    for status in (200, 400, 401, 403, 404, 413, 422, 600):
        assert status not in RETRY_STATUSES and not is_retryable_status(status)
