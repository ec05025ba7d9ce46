"""A rule the caller's history already breaks (not a pairing rule) is passed through by a
compaction, not reported as the compactor's own invariant error."""

import pytest

from compactor import MessageCompactor
from compactor._format import Format
from compactor._tokens import HeuristicCounter
from compactor._validate import validate


def _history(fmt: Format) -> list[dict]:
    msgs: list[dict] = []
    for i in range(40):
        msgs.append({"role": "user", "content": f"step {i}: " + "details " * 30})
        msgs.append({"role": "assistant", "content": f"done with step {i}. " + "note " * 30})
    # the caller's own mistake, near the end so it is kept: an empty user message
    # (Anthropic rejects it) between two assistant turns
    msgs.insert(len(msgs) - 1, {"role": "user", "content": ""})
    msgs.append({"role": "user", "content": "and now?"})
    return msgs


@pytest.mark.parametrize("fmt", [Format.ANTHROPIC, Format.OPENAI])
async def test_empty_message_in_the_input_does_not_raise_an_invariant_error(fmt):
    """An input with an empty user message compacts; the result breaks no rule the input
    did not already break."""
    msgs = _history(fmt)
    had = {v.rule for v in validate(msgs, fmt)}
    assert "empty_content" in had      # the input really breaks the rule
    comp = MessageCompactor(counter=HeuristicCounter())
    r = await comp.compact_if_needed(msgs, window=1500, fmt=fmt)
    assert r.compacted
    assert {v.rule for v in validate(r.messages, fmt)} <= had


def test_a_non_object_item_after_an_open_responses_call_is_a_shape_violation():
    """A list where a Responses item should be, after a call still open at the end, is a
    ``shape`` violation (and the call is unanswered), not an AttributeError."""
    items = [{"type": "message", "role": "user", "content": "hi"},
             {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
             ["bad"]]
    rules = [(v.rule, v.index) for v in validate(items, Format.RESPONSES,
                                                 allow_open_calls_at_end=True)]
    assert ("shape", 2) in rules and ("unanswered_call", 1) in rules
