"""Each compaction becomes one ``compactor.compaction`` span whose token attributes equal
the ledger record and a recount of the histories; the metrics are the sums."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from builders import anthropic_session

from compactor import HeuristicCounter, MessageCompactor
from compactor._otel import DURATION_BUCKETS_S, OTelSink
from compactor._sink import MemorySink

pytestmark = pytest.mark.timeout(60)


async def _drive(comp: MessageCompactor, turns: int, session_id: str) -> list[tuple[Any, Any]]:
    """An agent loop: before each user turn's model call, compact. Returns
    ``(history sent, result)`` for the calls that compacted."""
    hist: list[Any] = []
    done = []
    for m in anthropic_session(turns):
        hist.append(m)
        if m["role"] == "user":
            sent = list(hist)
            r = await comp.compact_if_needed(sent, session_id=session_id)
            if r.compacted:
                done.append((sent, r))
            hist = list(r.messages)
    return done


def _run(otel, turns: int = 40) -> tuple[MemorySink, MessageCompactor, list[tuple[Any, Any]]]:
    mem = MemorySink()
    sink = OTelSink(mem, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    comp = MessageCompactor(sink=sink, counter=HeuristicCounter(), window=3000,
                            agent_id="otel-test")
    return mem, comp, asyncio.run(_drive(comp, turns, "s-otel"))


def test_one_span_per_compaction_with_the_ledgers_and_a_recounts_tokens(otel) -> None:
    """N compactions give N compactor.compaction spans, in order, whose token attributes
    equal the compaction records and a recount of the histories sent and returned."""
    mem, comp, done = _run(otel)
    records = mem.of("compaction")
    spans = otel.finished("compactor.compaction")
    assert len(done) >= 3
    assert len(records) == len(done) == len(spans)
    for (sent, res), rec, span in zip(done, records, spans):
        a = span.attributes
        before = comp.count_request(sent)
        after = comp.count_request(res.messages)
        assert (a["compactor.tokens_before"], a["compactor.tokens_after"]) == (before, after)
        assert (rec["tokens_before"], rec["tokens_after"]) == (before, after)
        assert a["compactor.tokens_saved"] == before - after > 0
        assert a["compactor.ratio"] == pytest.approx(1 - after / before, abs=1e-4)
        assert a["compactor.ratio"] == rec["ratio"]
        assert a["compactor.summarizer"] == rec["summarizer"] == res.summarizer
        assert a["compactor.cost_usd"] == rec["cost_usd"]
        assert a["compactor.session_id"] == a["gen_ai.conversation.id"] == "s-otel"
        assert a["compactor.agent_id"] == "otel-test"
        assert a["compactor.must_keep_ratio"] == pytest.approx(
            res.must_keep_kept / res.must_keep_total if res.must_keep_total else 1.0, abs=1e-4)
        assert a["gen_ai.operation.name"] == "compaction"
        assert a["gen_ai.usage.input_tokens"] == rec["summarizer_input_tokens"]
        assert a["gen_ai.usage.output_tokens"] == rec["summarizer_output_tokens"]
        assert "gen_ai.request.model" not in a          # no model was named: no None attribute
        assert span.end_time - span.start_time == pytest.approx(rec["duration_s"] * 1e9,
                                                                abs=1_000)
        assert span.status.is_ok


def test_counters_and_histogram_are_the_sums_of_the_compactions(otel) -> None:
    """compactor.compactions counts the compactions, compactor.tokens_saved sums
    tokens_before - tokens_after, and the duration histogram holds every duration_s."""
    mem, _, done = _run(otel)
    records = mem.of("compaction")
    (count,) = otel.points("compactor.compactions")
    assert count.value == len(done)
    (saved,) = otel.points("compactor.tokens_saved")
    assert saved.value == sum(r.tokens_before - r.tokens_after for _, r in done)
    (hist,) = otel.points("compactor.compaction.duration")
    assert hist.count == len(records)
    assert hist.sum == pytest.approx(sum(r["duration_s"] for r in records))
    assert tuple(hist.explicit_bounds) == DURATION_BUCKETS_S
    assert dict(count.attributes) == {"compactor.summarizer": "extractive"}
    assert otel.unit("compactor.tokens_saved") == "{token}"
    assert otel.unit("compactor.compaction.duration") == "s"
    assert otel.points("compactor.budget_alerts") == []


def test_the_model_named_by_the_call_is_gen_ai_request_model(otel) -> None:
    """A model passed to compact_if_needed is the span's gen_ai.request.model and a
    metric attribute."""
    sink = OTelSink(None, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    comp = MessageCompactor(sink=sink, counter=HeuristicCounter(), window=3000)
    res = asyncio.run(comp.compact_if_needed(anthropic_session(30), model="claude-sonnet-4-5",
                                             force=True))
    assert res.compacted
    (span,) = otel.finished("compactor.compaction")
    assert span.attributes["gen_ai.request.model"] == "claude-sonnet-4-5"
    (count,) = otel.points("compactor.compactions")
    assert count.attributes["gen_ai.request.model"] == "claude-sonnet-4-5"
