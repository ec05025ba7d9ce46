"""MessageCompactor: the async driver."""

import asyncio
import copy
import json
import re

import pytest

from compactor import (ExtractiveSummarizer, Format, MemorySink, MessageCompactor, PlanConfig,
                       SummarizerError, SummaryRequest, content_hash, validate)
from compactor._format import is_summary

from builders import a_calls, a_text, a_user, anthropic_session, o_calls


#: The must-keep items of builders.anthropic_session: bug ids and module paths.
_ITEM = re.compile(r"BUG-\d+|src/mod\d+\.py")


def _evicted_items(before, after) -> set[str]:
    """The items of the messages in ``before`` whose content is not in ``after``."""
    sent = {json.dumps(m, sort_keys=True) for m in after}
    evicted = [m for m in before if json.dumps(m, sort_keys=True) not in sent]
    return set(_ITEM.findall(json.dumps(evicted)))


def _missing(items, messages) -> set[str]:
    """The items not found in ``messages`` (as whole items: BUG-10 is not in BUG-100)."""
    found = set(_ITEM.findall(json.dumps(messages)))
    return set(items) - found


class CountingCounter:
    """A heuristic counter that records how many texts it was asked to count."""

    def __init__(self):
        self.calls = 0

    def count(self, text):
        self.calls += 1
        return -(-len(text) // 4)


async def test_compacts_real_shaped_history_and_reports_it(counter):
    """Over the watermark: fewer tokens, a summary, hashes of every removed message, a record."""
    msgs = anthropic_session(40)
    sink = MemorySink()
    comp = MessageCompactor(counter=counter, window=3000, sink=sink, agent_id="a1")
    r = await comp.compact_if_needed(msgs, session_id="s1", system="You are a coding agent.")
    assert r.compacted and r.tokens_after < r.tokens_before <= comp.count_request(msgs, system="You are a coding agent.") + 0
    assert r.tokens_after <= 3000
    assert 0 < r.ratio < 1 and r.ratio == pytest.approx(1 - r.tokens_after / r.tokens_before)
    assert is_summary(r.messages[0], Format.ANTHROPIC)
    assert validate(r.messages, Format.ANTHROPIC) == []
    kept = [m for m in r.messages if not is_summary(m, Format.ANTHROPIC)]
    assert len(kept) + len(r.removed) == len(msgs)
    assert r.removed_hashes == tuple(content_hash(m) for m in r.removed)
    # the bug ids and file paths of the evicted turns, found by this test, are all in what is sent
    items = _evicted_items(msgs, r.messages)
    assert len(items) > 20 and _missing(items, r.messages) == set()
    rec = sink.of("compaction")[0]
    assert rec["session_id"] == "s1" and rec["agent_id"] == "a1"
    assert rec["tokens_before"] == r.tokens_before and rec["removed_hashes"] == list(r.removed_hashes)


async def test_under_threshold_returns_history_unchanged(counter):
    """Below the high watermark the same messages come back and nothing is recorded."""
    msgs = anthropic_session(2)
    sink = MemorySink()
    r = await MessageCompactor(counter=counter, window=100_000, sink=sink).compact_if_needed(msgs)
    assert not r.compacted and r.messages == msgs and all(a is b for a, b in zip(r.messages, msgs))
    assert sink.records == []


async def test_counting_is_incremental():
    """The under-threshold check counts only the new messages of a growing history."""
    ctr = CountingCounter()
    comp = MessageCompactor(counter=ctr, window=10_000_000)
    msgs = anthropic_session(50)
    await comp.compact_if_needed(msgs, session_id="s")
    first = ctr.calls
    assert first > 100
    msgs.append(a_text("one more"))
    msgs.append(a_user("and another"))
    ctr.calls = 0
    r = await comp.compact_if_needed(msgs, session_id="s")
    assert ctr.calls == 2
    # the running total the O(1) threshold check uses matches a full recount
    assert r.tokens_before == comp.count_request(msgs)


async def test_running_total_stays_exact_across_compactions(counter):
    """After compactions and growth, the cached total equals a recount of what is sent, and
    the decision made from it matches the one made from the per-message counts."""
    comp = MessageCompactor(counter=counter, window=2500)
    msgs = anthropic_session(12)
    history = list(msgs)
    compactions = 0
    for k in range(30):
        r = await comp.compact_if_needed(history, session_id="s")
        assert r.tokens_before == comp.count_request(history)
        assert r.tokens_after == comp.count_request(r.messages)
        compactions += r.compacted
        history = list(r.messages) + [a_text(f"step {k} " * 20), a_user(f"ok {k} " * 20)]
    assert compactions >= 2


async def test_cache_primed_after_compaction(counter):
    """After a compaction the next call counts only what the agent appended."""
    ctr = CountingCounter()
    comp = MessageCompactor(counter=ctr, window=3000)
    r = await comp.compact_if_needed(anthropic_session(40), session_id="s")
    assert r.compacted
    nxt = [*r.messages, a_text("reply"), a_user("next")]
    ctr.calls = 0
    r2 = await comp.compact_if_needed(nxt, session_id="s")
    assert ctr.calls == 2 and not r2.compacted


class SlowSummarizer:
    name = "slow"

    def __init__(self, delay=0.05):
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.input_window = None

    async def summarize(self, request: SummaryRequest) -> str:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        return f"summary of {len(request.messages)} messages and {len(request.partials)} parts"


async def test_concurrent_calls_on_one_session_compact_once(counter):
    """Two concurrent compact_if_needed calls with the same history (one of them a deep
    copy) summarize once: the second reads as the first one's compacted view and sends
    the same messages."""
    s = SlowSummarizer()
    comp = MessageCompactor(counter=counter, window=3000, summarizer=s)
    msgs = anthropic_session(40)
    r1, r2 = await asyncio.gather(comp.compact_if_needed(msgs, session_id="x"),
                                  comp.compact_if_needed(copy.deepcopy(msgs), session_id="x"))
    assert s.calls == 1 and comp.session("x").compaction_count == 1
    assert [r1.compacted, r2.compacted].count(True) == 1
    assert r1.messages == r2.messages


class FailingSummarizer:
    name = "broken"

    def __init__(self, result=None):
        self.result = result

    async def summarize(self, request):
        if self.result is None:
            raise SummarizerError("upstream 529 overloaded")
        return self.result


@pytest.mark.parametrize("result", [None, "", "   ", "x " * 50_000])
async def test_summarizer_failure_falls_back_and_is_recorded(counter, result):
    """Errors, empty and over-long summaries fall back to the extractive summarizer; the
    failure is recorded and never becomes content."""
    sink = MemorySink()
    comp = MessageCompactor(counter=counter, window=3000, summarizer=FailingSummarizer(result),
                            sink=sink)
    r = await comp.compact_if_needed(anthropic_session(40))
    assert r.compacted and r.summarizer == "extractive"
    assert "529" not in r.summary and "x x x x" not in r.summary
    fb = sink.of("summarizer_fallback")
    assert len(fb) == 1 and fb[0]["summarizer"] == "broken" and fb[0]["fallback"] == "extractive"


async def test_must_keep_check_appends_missing_facts(counter):
    """A summarizer that drops identifiers gets them appended in a Key facts line."""
    msgs = anthropic_session(40)
    comp = MessageCompactor(counter=counter, window=3000,
                            summarizer=FailingSummarizer("The user fixed several bugs."))
    r = await comp.compact_if_needed(msgs)
    assert r.summary.startswith("The user fixed several bugs.")
    assert "Key facts:" in r.summary and "BUG-1000" in r.summary
    items = _evicted_items(msgs, r.messages)
    # an item a kept message still states is not repeated in the summary
    kept = [m for m in r.messages if "<conversation_summary>" not in json.dumps(m)]
    in_kept = set(_ITEM.findall(json.dumps(kept)))
    assert len(items - in_kept) > 20 and _missing(items - in_kept, [{"content": r.summary}]) == set()
    assert _missing(items, r.messages) == set()


async def test_large_span_is_chunked_and_summarized_concurrently(counter):
    """A span larger than the summarizer's input window is split on unit boundaries,
    summarized with bounded concurrency, then merged."""
    s = SlowSummarizer()
    s.input_window = 400
    comp = MessageCompactor(counter=counter, window=6000, summarizer=s, max_concurrency=3)
    r = await comp.compact_if_needed(anthropic_session(80))
    assert r.compacted and s.calls >= 5
    assert 1 < s.max_in_flight <= 3
    assert "parts" in r.summary and validate(r.messages, Format.ANTHROPIC) == []


async def test_openai_history_round_trips_in_openai_format(counter):
    """An OpenAI history comes back as OpenAI: system prompt first, then a system summary."""
    o = [{"role": "system", "content": "sys"}]
    for t in range(30):
        o += [{"role": "user", "content": f"find order ORD-{t:04d} " * 10}, *o_calls("lookup"),
              {"role": "assistant", "content": "found it " * 10}]
    o.append({"role": "user", "content": "thanks"})
    r = await MessageCompactor(counter=counter, window=2500).compact_if_needed(o)
    assert r.compacted and r.fmt is Format.OPENAI
    assert r.messages[0] is o[0] and r.messages[1]["role"] == "system"
    assert validate(r.messages, Format.OPENAI) == []
    assert r.messages[-1] is o[-1]


async def test_max_tokens_is_reserved_out_of_the_window(counter):
    """The reserved output tokens shrink the usable window."""
    comp = MessageCompactor(counter=counter)
    assert comp.usable_window(model="claude-sonnet-4-5", max_tokens=8000) == 120_000
    assert comp.usable_window(window=10_000, max_tokens=1000) == 9000


async def test_dry_run_returns_the_plan_that_compact_executes(counter):
    """dry_run's plan is the one compact_if_needed applies (same kept and evicted messages)."""
    msgs = anthropic_session(40)
    comp = MessageCompactor(counter=counter, window=3000)
    p = comp.dry_run(msgs, session_id="d")
    r = await comp.compact_if_needed(msgs, session_id="d")
    assert p == r.plan
    assert [msgs[i] for i in p.evicted] == list(r.removed)


def test_extractive_summary_is_deterministic_and_budgeted(counter):
    """Same input, same summary; it fits its budget and keeps goals, errors and identifiers."""
    call, res = a_calls("run_tests")
    res["content"][0]["is_error"] = True
    res["content"][0]["content"] = "Error: test_invoice failed with KeyError 'amount_cents'"
    msgs = [a_user("Please migrate billing to Tallyrail by 2026-04-02; do not change InvoiceService."),
            call, res, a_text("I decided to keep amounts in cents. Ticket BILL-4821 is open."),
            a_user("ok " * 300)]
    req = SummaryRequest(msgs, Format.ANTHROPIC, None, 120, counter)
    s1 = ExtractiveSummarizer().summarize_sync(req)
    assert s1 == ExtractiveSummarizer().summarize_sync(req)
    assert counter.count(s1) <= 120
    for item in ("2026-04-02", "BILL-4821", "run_tests"):
        assert item in s1
    assert "KeyError" in s1 or "failed" in s1


async def test_full_history_mode_reuses_the_last_compaction(counter):
    """An agent that keeps passing its own full history gets the compacted view plus its new
    messages, without a new compaction on every call."""
    sink = MemorySink()
    comp = MessageCompactor(counter=counter, window=3000, sink=sink)
    full = anthropic_session(40)
    r1 = await comp.compact_if_needed(full, session_id="f")
    assert r1.compacted
    full += [a_text("reply"), a_user("next question")]
    r2 = await comp.compact_if_needed(full, session_id="f")
    assert not r2.compacted and len(sink.of("compaction")) == 1
    assert r2.messages[:len(r1.messages)] == r1.messages and r2.messages[-1] is full[-1]
    assert validate(r2.messages, Format.ANTHROPIC) == []
    for t in range(40):   # keep growing: compactions stay rare and the view stays small
        call, res = a_calls("grep")
        full += [call, res, a_text(f"step {t} " * 30), a_user(f"continue {t}")]
        r = await comp.compact_if_needed(full, session_id="f")
        assert comp.count_request(r.messages) <= 3000
        assert validate(r.messages, Format.ANTHROPIC) == []
    assert 2 <= len(sink.of("compaction")) <= 25


class PricedSummarizer:
    name = "priced"

    async def summarize(self, request):
        request.usage.append({"model": "claude-haiku-4-5", "input_tokens": 10_000,
                              "output_tokens": 1_000})
        return "A short summary of the work so far."


async def test_compaction_record_prices_summarizer_usage(counter):
    """Usage a summarizer reports is priced into cost_usd (Haiku 4.5: $1 / $5 per MTok)."""
    sink = MemorySink()
    comp = MessageCompactor(counter=counter, window=3000, sink=sink, summarizer=PricedSummarizer())
    await comp.compact_if_needed(anthropic_session(40))
    rec = sink.of("compaction")[0]
    assert rec["cost_usd"] == pytest.approx(0.015)
    assert rec["summarizer_input_tokens"] == 10_000
    offline = MemorySink()
    await MessageCompactor(counter=counter, window=3000, sink=offline).compact_if_needed(
        anthropic_session(40))
    assert offline.of("compaction")[0]["cost_usd"] == 0.0


async def test_a_key_in_a_summarizer_error_never_reaches_the_sink_or_log(counter, caplog):
    """A summarizer whose error text echoes an API key: the fallback record and the log
    line carry the error with the key masked."""
    key = "sk-ant-test-FAKE0123456789abcdef"

    class Leaky:
        name = "leaky"
        input_window = None

        async def summarize(self, request):
            raise RuntimeError(f"401: invalid x-api-key {key} (Authorization: Bearer {key})")

    sink = MemorySink()
    comp = MessageCompactor(summarizer=Leaky(), counter=counter, window=3000, sink=sink)
    with caplog.at_level("DEBUG"):
        r = await comp.compact_if_needed(anthropic_session(40), session_id="s")
    assert r.compacted and r.summarizer == "extractive"
    falls = sink.of("summarizer_fallback")
    assert falls and falls[0]["summarizer"] == "leaky" and "RuntimeError" in falls[0]["error"]
    assert key not in repr(sink.records) and key not in caplog.text
