"""Summarizer fallbacks and retries become error spans with counters; budget alerts,
bumps and usage records become spans, and alerts are counted by level."""

from __future__ import annotations

import asyncio
import logging

import pytest
from builders import anthropic_session

from compactor import HeuristicCounter, MessageCompactor
from compactor._otel import OTelSink
from compactor._sink import MemorySink
from compactor.adapters._resilience import (CallContext, ProviderCallError, RetryPolicy,
                                            call_with_retries)
from compactor.budgets import BudgetMonitor

pytestmark = pytest.mark.timeout(60)


class Broken:
    """A summarizer whose model is down."""

    name = "broken"

    async def summarize(self, request):
        raise RuntimeError("model unavailable")


def _sink(otel, inner=None) -> OTelSink:
    return OTelSink(inner, tracer_provider=otel.tracer_provider,
                    meter_provider=otel.meter_provider)


def test_a_failed_summarizer_is_an_error_span_and_the_compaction_names_the_fallback(otel) -> None:
    """A summarizer that raises gives a compactor.summarizer.fallback span with status
    ERROR and error.type, a fallbacks count, and a compaction span naming the fallback."""
    mem = MemorySink()
    comp = MessageCompactor(summarizer=Broken(), sink=_sink(otel, mem),
                            counter=HeuristicCounter(), window=3000)
    res = asyncio.run(comp.compact_if_needed(anthropic_session(30), force=True, session_id="s"))
    assert res.compacted and res.summarizer == "extractive"
    (rec,) = mem.of("summarizer_fallback")
    (span,) = otel.finished("compactor.summarizer.fallback")
    assert not span.status.is_ok
    assert span.status.description == rec["error"]
    assert "model unavailable" in span.status.description
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["compactor.summarizer"] == "broken"
    assert span.attributes["compactor.fallback"] == "extractive"
    (comp_span,) = otel.finished("compactor.compaction")
    assert comp_span.attributes["compactor.summarizer"] == "extractive"
    (n,) = otel.points("compactor.summarizer.fallbacks")
    assert n.value == 1


def test_each_retry_is_a_span_with_the_attempt_and_the_http_status(otel) -> None:
    """Two retryable 529s then a success give two compactor.summarizer.retry spans
    (attempts 1 and 2, http.response.status_code 529) and a retries count of 2."""
    mem = MemorySink()
    calls = []

    async def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ProviderCallError("overloaded", status=529, retryable=True)
        return "ok"

    policy = RetryPolicy(attempts=4, deadline_s=10.0, backoff_s=0.001, backoff_max_s=0.002)
    out = asyncio.run(call_with_retries(call, policy=policy, sink=_sink(otel, mem),
                                        context=CallContext("anthropic", "claude-haiku", "s1")))
    assert out == "ok"
    assert len(mem.of("summarizer_retry")) == 2
    spans = otel.finished("compactor.summarizer.retry")
    assert [s.attributes["compactor.retry.attempt"] for s in spans] == [1, 2]
    assert all(s.attributes["http.response.status_code"] == 529 for s in spans)
    assert all(s.attributes["gen_ai.request.model"] == "claude-haiku" for s in spans)
    assert all(s.attributes["compactor.session_id"] == "s1" for s in spans)
    assert all(not s.status.is_ok for s in spans)
    (n,) = otel.points("compactor.summarizer.retries")
    assert n.value == 2


def test_budget_alerts_are_spans_and_counted_by_level(otel) -> None:
    """Crossing 75%, 90% and 100% of a budget gives one compactor.budget.alert span per
    level and compactor.budget_alerts 1 for each level; finishing gives a usage span."""
    mem = MemorySink()
    mon = BudgetMonitor(sink=_sink(otel, mem), enforcement="soft")
    with mon.start("test-runner", complexity="medium", invocation_id="i1",
                   session_id="s9") as inv:
        budget = inv.base.tokens
        for pct in (50, 76, 91, 100, 100):
            inv.check(budget * pct // 100)
        inv.record_usage(1234, 56)
    levels = [r["level"] for r in mem.of("budget_alert")]
    assert levels == ["info", "warning", "critical"]
    spans = otel.finished("compactor.budget.alert")
    assert [s.attributes["compactor.budget.level"] for s in spans] == levels
    assert [s.attributes["compactor.budget.used_tokens"] for s in spans] == \
        [budget * 76 // 100, budget * 91 // 100, budget]
    assert all(s.attributes["compactor.budget.budget_tokens"] == budget for s in spans)
    assert all(s.attributes["compactor.invocation_id"] == "i1" for s in spans)
    by_level = {p.attributes["compactor.budget.level"]: p.value
                for p in otel.points("compactor.budget_alerts")}
    assert by_level == {"info": 1, "warning": 1, "critical": 1}
    (usage,) = otel.finished("compactor.budget.usage")
    (rec,) = mem.of("usage")
    assert usage.attributes["gen_ai.usage.input_tokens"] == rec["input_tokens"] == 1234
    assert usage.attributes["gen_ai.usage.output_tokens"] == rec["output_tokens"] == 56
    assert usage.attributes["compactor.budget.peak_tokens"] == budget
    assert list(usage.attributes["compactor.budget.alerts"]) == levels


def test_a_soft_bump_is_a_span(otel) -> None:
    """A request over the budget in soft mode gives a compactor.budget.bump span with
    both profiles and both budgets."""
    mem = MemorySink()
    mon = BudgetMonitor(sink=_sink(otel, mem), enforcement="soft")
    with mon.start("test-runner", complexity="complex") as inv:
        inv.check(inv.base.tokens + 10)
    (rec,) = mem.of("budget_bump")
    (span,) = otel.finished("compactor.budget.bump")
    a = span.attributes
    assert (a["compactor.budget.from_profile"], a["compactor.budget.to_profile"]) == \
        (rec["from_profile"], rec["to_profile"])
    assert a["compactor.budget.budget_tokens_before"] == rec["budget_tokens_before"]
    assert a["compactor.budget.budget_tokens_after"] == rec["budget_tokens_after"]


def test_a_recall_record_is_a_retrieval_span(otel) -> None:
    """A recall record becomes a compactor.recall span (gen_ai.operation.name retrieval)
    lasting its duration_s and counting its items."""
    sink = _sink(otel)
    sink.emit("recall", {"session_id": "s1", "agent_id": "a", "query": "BUG-1003",
                         "items": [{"ordinal": 3}, {"ordinal": 4}], "duration_s": 0.25})
    (span,) = otel.finished("compactor.recall")
    assert span.attributes["gen_ai.operation.name"] == "retrieval"
    assert span.attributes["compactor.recall.items"] == 2
    assert "BUG-1003" not in str(dict(span.attributes))      # the query text is not exported
    assert span.end_time - span.start_time == 250_000_000


def test_a_telemetry_failure_never_reaches_the_caller(otel, caplog) -> None:
    """A tracer that raises does not break emit: the event still reaches the inner sink
    and the failure is logged."""

    class Exploding:
        def get_tracer(self, *a, **k):
            return self

        def start_span(self, *a, **k):
            raise RuntimeError("exporter on fire")

    mem = MemorySink()
    sink = OTelSink(mem, tracer_provider=Exploding(), meter_provider=otel.meter_provider)
    caplog.set_level(logging.ERROR, logger="compactor.otel")
    sink.emit("compaction", {"tokens_before": 10, "tokens_after": 4, "duration_s": 0.1})
    assert mem.records == [{"event": "compaction", "tokens_before": 10, "tokens_after": 4,
                            "duration_s": 0.1}]
    assert "exporter on fire" in caplog.text


def test_events_it_does_not_know_only_reach_the_inner_sink(otel) -> None:
    """An event with no telemetry mapping (maintenance) makes no span and is passed on."""
    mem = MemorySink()
    sink = _sink(otel, mem)
    sink.emit("maintenance", {"action": "truncate_torn_tail"})
    assert otel.spans.get_finished_spans() == ()
    assert mem.of("maintenance") == [{"event": "maintenance", "action": "truncate_torn_tail"}]
