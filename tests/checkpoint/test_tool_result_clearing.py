"""Old tool results are cleared before anything is summarized: placeholders keep the
archive reference and identifiers, every call keeps its result, both wire formats."""

from __future__ import annotations

from typing import Any

from compactor import HeuristicCounter, validate
from compactor._clearing import CLEARED_PREFIX
from compactor._format import Format
from compactor._plan import PlanConfig, apply, fill_target, plan
from compactor._tokens import message_tokens

COUNTER = HeuristicCounter()
# the thresholds these plans are built around (windows at 0.75-0.8 of a history), given
# explicitly: a clearing test must not depend on the shipped defaults
WATERMARKS = {"high_watermark": 0.7, "low_watermark": 0.4, "max_summary_tokens": 2000}
BIG = ("row 17 of table orders: status shipped, carrier DHL, tracking JD014600006081 " * 30).strip()


def _anthropic(n_calls: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Check order ORD-5521 please."}]
    for k in range(n_calls):
        cid = f"toolu_{k:03d}"
        msgs.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": cid, "name": "lookup" if k % 2 else "search",
             "input": {"q": f"ORD-55{k:02d}"}}]})
        msgs.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": cid, "content": f"{BIG} ref ORD-55{k:02d}"}]})
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": "Done."}]})
    return msgs


def _openai(n_calls: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You help."},
                                  {"role": "user", "content": "Check order ORD-5521 please."}]
    for k in range(n_calls):
        cid = f"call_{k:03d}"
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": cid, "content": f"{BIG} ref ORD-55{k:02d}"})
    msgs.append({"role": "assistant", "content": "Done."})
    return msgs


def _plan(msgs, fmt, window, **cfg):
    counts = [message_tokens(m, fmt, COUNTER) for m in msgs]
    config = PlanConfig(**{**WATERMARKS, "clear_tool_results": True, **cfg})
    return plan(msgs, fmt, counts, overhead_tokens=0, window=window, config=config,
                counter=COUNTER), counts, config


def test_clearing_alone_when_it_is_enough_anthropic() -> None:
    """Six big results over the watermark: the oldest are cleared, nothing is evicted,
    the last three stay whole, every tool_use keeps its tool_result, and each
    placeholder cites the ordinal and keeps the tracking id."""
    msgs = _anthropic(6)
    total = sum(message_tokens(m, Format.ANTHROPIC, COUNTER) for m in msgs)
    p, _, _ = _plan(msgs, Format.ANTHROPIC, int(total / 0.75))
    assert p.compact and p.reason == "tool results cleared" and p.evicted == ()
    assert p.cleared and {c.call_id for c in p.cleared} <= {f"toolu_{k:03d}" for k in range(3)}
    ords = {i: 100 + i for i in range(len(msgs))}
    out = apply(p, msgs, None, ords)
    assert validate(out, Format.ANTHROPIC) == []
    assert len(out) == len(msgs)
    for c in p.cleared:
        text = out[c.index]["content"][c.block]["content"]
        assert text.startswith(CLEARED_PREFIX) and f"#{100 + c.index}" in text
        assert "JD014600006081" in text and c.tool in text and c.tokens_saved > 0
    last = out[-2]["content"][0]["content"]
    assert not last.startswith(CLEARED_PREFIX)
    assert msgs[2]["content"][0]["content"].startswith("row 17")  # the caller's object untouched


def test_clearing_alone_when_it_is_enough_openai() -> None:
    """The same for OpenAI tool messages: content replaced, tool_call_id kept."""
    msgs = _openai(6)
    total = sum(message_tokens(m, Format.OPENAI, COUNTER) for m in msgs)
    p, _, _ = _plan(msgs, Format.OPENAI, int(total / 0.75))
    assert p.reason == "tool results cleared" and p.cleared and p.evicted == ()
    out = apply(p, msgs, None, None)
    assert validate(out, Format.OPENAI) == []
    for c in p.cleared:
        assert c.block == -1 and out[c.index]["tool_call_id"] == msgs[c.index]["tool_call_id"]
        assert out[c.index]["content"].startswith(CLEARED_PREFIX)


def test_excluded_tools_and_last_uses_are_never_cleared() -> None:
    """Results of an excluded tool and of the last K tool uses stay verbatim."""
    msgs = _anthropic(8)
    total = sum(message_tokens(m, Format.ANTHROPIC, COUNTER) for m in msgs)
    p, _, _ = _plan(msgs, Format.ANTHROPIC, int(total / 0.75), clear_exclude_tools=("lookup",),
                    clear_keep_last=2)
    assert p.cleared
    assert all(c.tool == "search" for c in p.cleared)
    assert not {c.call_id for c in p.cleared} & {"toolu_006", "toolu_007"}


def test_summarizing_follows_when_clearing_is_not_enough() -> None:
    """Far over the window, clearing is combined with eviction; the plan stays pair-safe."""
    msgs = _anthropic(12)
    total = sum(message_tokens(m, Format.ANTHROPIC, COUNTER) for m in msgs)
    p, counts, config = _plan(msgs, Format.ANTHROPIC, int(total / 3))
    assert p.compact and p.evicted and p.summary_budget > 0
    assert all(c.index in p.kept for c in p.cleared)
    out = apply(p, msgs, "Checkpoint v1 (3 messages)", None)
    assert validate(out, Format.ANTHROPIC) == []


def test_fill_target_keeps_more_recent_units_when_the_summary_is_short() -> None:
    """A summary far below its budget leaves room that more recent units fill, the
    result stays under the low watermark and pairs stay whole."""
    msgs = _anthropic(12)
    counts = [message_tokens(m, Format.ANTHROPIC, COUNTER) for m in msgs]
    window = int(sum(counts) / 0.8)
    config = PlanConfig(high_watermark=0.7, low_watermark=0.4, max_summary_tokens=1500,
                        keep_recent=0, clear_tool_results=False)
    p = plan(msgs, Format.ANTHROPIC, counts, overhead_tokens=0, window=window, config=config)
    q = fill_target(p, msgs, counts, 30, config)
    assert len(q.kept) > len(p.kept) and set(q.kept) | set(q.evicted) == set(range(len(msgs)))
    assert q.tokens_after - q.summary_budget + 30 <= config.low_watermark * window
    out = apply(q, msgs, "Checkpoint v1 (9 messages)", None)
    assert validate(out, Format.ANTHROPIC) == []
    assert fill_target(p, msgs, counts, p.summary_budget, config) is p
