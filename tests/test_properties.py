"""Property tests: any valid history stays valid after compaction, and nothing is lost
without its hash. Validity is judged by the independent checker
(``compactor.testing._rules``), not by the ``compactor.validate`` under test."""

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactor import (ContextOverflowError, Format, HeuristicCounter, MessageCompactor,
                       PlanConfig, content_hash)
from compactor._format import is_summary
from compactor.testing import _rules

WORDS = st.lists(st.sampled_from("alpha beta gamma ORD-1234 2024-05-15 $120.50 src/a.py "
                                 "error fixed deploy HAT001 Mia Li please must".split()),
                 min_size=1, max_size=60).map(" ".join)


@st.composite
def anthropic_history(draw):
    n_id = iter(range(10_000))
    msgs = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["user", "user", "assistant", "tools", "tools", "user2"]))
        if kind in ("user", "user2"):
            msgs.append({"role": "user", "content": draw(WORDS)})
            if kind == "user2":
                msgs.append({"role": "user", "content": [{"type": "text", "text": draw(WORDS)}]})
        elif kind == "assistant":
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": draw(WORDS)}]})
        else:
            k = draw(st.integers(1, 4))
            ids = [f"toolu_{next(n_id)}" for _ in range(k)]
            content = []
            if draw(st.booleans()):
                content.append({"type": "thinking", "thinking": draw(WORDS), "signature": "sig" + ids[0]})
            if draw(st.booleans()):
                content.append({"type": "text", "text": draw(WORDS)})
            content += [{"type": "tool_use", "id": i, "name": "tool", "input": {"q": draw(WORDS)}}
                        for i in ids]
            msgs.append({"role": "assistant", "content": content})
            results = [{"type": "tool_result", "tool_use_id": i, "content": draw(WORDS),
                        **({"is_error": True} if draw(st.booleans()) else {})} for i in ids]
            if draw(st.booleans()):
                results.append({"type": "text", "text": draw(WORDS)})
            msgs.append({"role": "user", "content": results})
    if msgs[-1]["role"] == "assistant":
        msgs.append({"role": "user", "content": "go on"})
    return msgs


@st.composite
def openai_history(draw):
    n_id = iter(range(10_000))
    msgs = [{"role": "system", "content": draw(WORDS)}]
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["user", "assistant", "tools", "tools"]))
        if kind == "user":
            msgs.append({"role": "user", "content": draw(WORDS)})
        elif kind == "assistant":
            msgs.append({"role": "assistant", "content": draw(WORDS)})
        else:
            ids = [f"call_{next(n_id)}" for _ in range(draw(st.integers(1, 4)))]
            msgs.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": i, "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                for i in ids]})
            msgs += [{"role": "tool", "tool_call_id": i, "content": draw(WORDS)} for i in ids]
    msgs.append({"role": "user", "content": "go on"})
    return msgs


def problems(msgs, fmt, *, thinking=False):
    """The provider rules ``msgs`` breaks, by the independent checker."""
    if fmt is Format.ANTHROPIC:
        return _rules.anthropic_problems(msgs, thinking=thinking)
    return _rules.openai_problems(msgs)


def check(msgs, fmt, window, keep_recent):
    assert problems(msgs, fmt) == []                             # the generator's histories
    # with extended thinking on, a history that keeps the thinking rule must still keep it
    thinking = fmt is Format.ANTHROPIC and problems(msgs, fmt, thinking=True) == []
    counter = HeuristicCounter()
    snapshot = [content_hash(m) for m in msgs]
    comp = MessageCompactor(counter=counter, window=window,
                            config=PlanConfig(keep_recent=keep_recent))
    try:
        r = asyncio.run(comp.compact_if_needed(msgs, fmt=fmt))
    except ContextOverflowError as e:
        assert e.floor_tokens + e.summary_tokens > e.window_tokens
        return
    assert [content_hash(m) for m in msgs] == snapshot          # input untouched
    assert problems(r.messages, fmt, thinking=thinking) == []   # still valid
    assert comp.count_request(r.messages, fmt=fmt) <= window     # inside the window
    kept = [m for m in r.messages if not is_summary(m, fmt)]
    kept_ids = {id(m) for m in kept}
    removed_ids = {id(m) for m in r.removed}
    for m in msgs:                                              # nothing lost without a hash
        assert (id(m) in kept_ids) != (id(m) in removed_ids)
    assert list(r.removed_hashes) == [content_hash(m) for m in r.removed]
    pos = {id(m): i for i, m in enumerate(msgs)}
    order = [pos[id(m)] for m in kept]
    assert order == sorted(order)                                # kept order preserved
    assert r.messages[-1] is msgs[-1]                            # turn in progress intact


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(anthropic_history(), st.integers(150, 3000), st.integers(0, 12))
def test_anthropic_histories_stay_valid(msgs, window, keep_recent):
    """Any valid Anthropic history (pairs, parallel calls, thinking, same-role runs) stays
    valid and inside the window after compaction."""
    check(msgs, Format.ANTHROPIC, window, keep_recent)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(openai_history(), st.integers(150, 3000), st.integers(0, 12))
def test_openai_histories_stay_valid(msgs, window, keep_recent):
    """Any valid OpenAI history (tool batches, system prompt) stays valid after compaction."""
    check(msgs, Format.OPENAI, window, keep_recent)
