"""Property tests for Responses API items: any valid item history stays valid (judged by
the independent checker, ``compactor.testing._rules.responses_problems``) and inside the
window after compaction, nothing is lost without its hash, and every reasoning item sent
is the caller's own, still directly before the item it belonged to."""

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactor import (ContextOverflowError, Format, HeuristicCounter, MessageCompactor,
                       PlanConfig, content_hash, validate)
from compactor._format import is_summary
from compactor.testing._rules import responses_problems

from test_properties import WORDS   # the chat formats' property tests' words

R = Format.RESPONSES


@st.composite
def responses_history(draw):
    n = iter(range(10_000))
    items = []
    if draw(st.booleans()):
        items.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(WORDS)})
    items.append({"role": "user", "content": draw(WORDS)})
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["user", "typed_user", "answer", "tools", "tools",
                                     "interleaved", "compaction", "web"]))
        if kind == "user":
            items.append({"role": "user", "content": draw(WORDS)})
        elif kind == "typed_user":
            items.append({"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": draw(WORDS)}]})
        elif kind == "compaction":
            items.append({"type": "compaction", "encrypted_content": f"enc{next(n)}" * 20})
        elif kind == "web":
            items.append({"type": "web_search_call", "id": f"ws_{next(n)}", "status": "completed",
                          "action": {"type": "search", "query": draw(WORDS)}})
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": draw(WORDS)}]})
        else:
            if draw(st.booleans()):
                items.append({"type": "reasoning", "id": f"rs_{next(n)}",
                              "summary": [{"type": "summary_text", "text": draw(WORDS)}],
                              "encrypted_content": f"gAAA{next(n)}" * 10})
            if kind == "answer":
                items.append({"type": "message", "role": "assistant",
                              "content": [{"type": "output_text", "text": draw(WORDS)}]})
                continue
            ids = [f"call_{next(n)}" for _ in range(draw(st.integers(1, 4)))]
            calls = [{"type": "function_call", "call_id": i, "name": "f",
                      "arguments": '{"q": "%s"}' % draw(WORDS)} for i in ids]
            outs = [{"type": "function_call_output", "call_id": i, "output": draw(WORDS)}
                    for i in ids]
            if kind == "interleaved":
                for c, o in zip(calls, outs):
                    items += [c, o]
            else:
                items += calls + outs
    items.append({"role": "user", "content": "go on"})
    return items


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses_history(), st.integers(150, 3000), st.integers(0, 12), st.booleans())
def test_responses_histories_stay_valid(items, window, keep_recent, clearing):
    """Any valid Responses history (parallel and interleaved calls, reasoning, compaction
    and built-in tool items) stays valid and inside the window after compaction."""
    assert responses_problems(items) == [] and validate(items, R) == []
    following = {content_hash(a): content_hash(b) for a, b in zip(items, items[1:])
                 if a.get("type") == "reasoning"}
    snapshot = [content_hash(m) for m in items]
    comp = MessageCompactor(counter=HeuristicCounter(), window=window,
                            config=PlanConfig(keep_recent=keep_recent,
                                              clear_tool_results=clearing, clear_min_tokens=5))
    try:
        r = asyncio.run(comp.compact_if_needed(items, fmt=R))
    except ContextOverflowError as e:
        assert e.floor_tokens + e.summary_tokens > e.window_tokens
        return
    assert [content_hash(m) for m in items] == snapshot          # input untouched
    sent = list(r.messages)
    assert responses_problems(sent) == []                        # still valid
    assert comp.count_request(sent, fmt=R) <= window             # inside the window
    for a, b in zip(sent, [*sent[1:], None]):                    # reasoning whole, with its item
        if a.get("type") == "reasoning":
            assert b is not None and following[content_hash(a)] == content_hash(b)
    kept = [m for m in sent if not is_summary(m, R)]
    by_id = {id(m) for m in kept}
    removed = {id(m) for m in r.removed}
    changed = [m for m in kept if id(m) not in {id(x) for x in items}]
    assert all(m.get("type") == "function_call_output" for m in changed)   # only clearing
    for m in items:                                              # nothing lost without a hash
        assert (id(m) in by_id) or (id(m) in removed) or any(
            c.get("call_id") == m.get("call_id") for c in changed)
    assert list(r.removed_hashes) == [content_hash(m) for m in r.removed]
    assert sent[-1] is items[-1]                                 # turn in progress intact
