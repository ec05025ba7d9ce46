"""An agent that moves its prompt-cache breakpoint (``cache_control``) onto the newest
message on every call -- in place, or by giving the recent messages as new dicts -- keeps
one history: no ``history_rewrite``, the archive holds each message once, and every call's
``tokens_before`` is the recount of what it sent. A real edit of a recent message's text
is still a rewrite."""

from __future__ import annotations

import pytest

from compactor import Format, HeuristicCounter, MemorySink, MessageCompactor, SessionStore, \
    message_tokens

from builders import anthropic_session

BREAKPOINT = {"type": "ephemeral"}


def _blocks(msgs):
    """The session with every text content as one text block (where a marker can go)."""
    return [{**m, "content": [{"type": "text", "text": m["content"]}]}
            if isinstance(m["content"], str) else m for m in msgs]


def _recount(msgs, counter) -> int:
    return sum(message_tokens(m, Format.ANTHROPIC, counter) for m in msgs)


@pytest.mark.parametrize("how", ["in-place", "new-dicts"])
async def test_moving_the_cache_breakpoint_is_not_a_rewrite(tmp_path, how):
    """20 calls, each moving the breakpoint from the previous last message to the new
    one: no history_rewrite record, the archive restores 1 copy of each message, and
    tokens_before is the per-message recount plus the first call's overhead."""
    counter = HeuristicCounter()
    sink = MemorySink()
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=counter, window=1_000_000, store=store, sink=sink)
    msgs = _blocks(anthropic_session(10))
    first = await comp.compact_if_needed(msgs, session_id="s")
    overhead = first.tokens_before - _recount(msgs, counter)
    for k in range(20):
        last = msgs[-1]
        if how == "in-place":
            last["content"][-1].pop("cache_control", None)
        else:
            msgs[-1] = {**last, "content": [{kk: v for kk, v in b.items() if kk != "cache_control"}
                                             for b in last["content"]]}
        role = "assistant" if last["role"] == "user" else "user"
        msgs.append({"role": role, "content": [{"type": "text", "text": f"step {k} done",
                                                "cache_control": BREAKPOINT}]})
        r = await comp.compact_if_needed(msgs, session_id="s")
        assert r.tokens_before == _recount(msgs, counter) + overhead
    assert sink.of("history_rewrite") == []
    assert len(store.restore("s")) == len(msgs)


async def test_editing_a_recent_text_in_place_is_still_a_rewrite(tmp_path):
    """The same loop, but the previous message's text is changed too: a history_rewrite
    is recorded at that message."""
    sink = MemorySink()
    comp = MessageCompactor(counter=HeuristicCounter(), window=1_000_000,
                            store=SessionStore(tmp_path), sink=sink)
    msgs = _blocks(anthropic_session(10))
    await comp.compact_if_needed(msgs, session_id="s")
    msgs[-1]["content"][-1]["text"] += " (edited)"
    msgs[-1]["content"][-1]["cache_control"] = BREAKPOINT
    msgs.append({"role": "assistant" if msgs[-1]["role"] == "user" else "user",
                 "content": [{"type": "text", "text": "next"}]})
    await comp.compact_if_needed(msgs, session_id="s")
    recs = sink.of("history_rewrite")
    assert len(recs) == 1 and recs[0]["fork"] == len(msgs) - 2
