"""With extended thinking, the assistant message that opened the tool-use loop still in
progress (the one carrying the thinking block) survives compaction, so what is sent keeps
Anthropic's rule that the loop's turn starts with its thinking block (judged by the
independent checker)."""

import asyncio

import pytest

from compactor import Format, HeuristicCounter, MessageCompactor, PlanConfig, message_tokens, plan
from compactor.testing._rules import anthropic_problems

from builders import a_calls, a_user, anthropic_session


def _history(steps: int):
    """Earlier turns, then one request answered by a tool loop of ``steps`` calls whose
    first assistant message starts with a thinking block; it ends with the last results
    (the loop is in progress). Returns the history and the loop's first message index."""
    msgs = anthropic_session(12)
    msgs.append(a_user("Now refactor the payment module, step by step."))
    start = len(msgs)
    for k in range(steps):
        call, res = a_calls(f"step{k}", thinking=(k == 0), text="Next I will look further. " * 8)
        msgs += [call, res]
    return msgs, start


@pytest.mark.parametrize("steps", [3, 6])
def test_compaction_keeps_the_thinking_block_that_opened_the_loop(steps):
    """Compacted hard (keep_recent 0, low watermark 0.2), the history sent back still holds
    the loop's first assistant message unchanged and breaks no rule, thinking on."""
    msgs, start = _history(steps)
    assert anthropic_problems(msgs, thinking=True) == []
    counter = HeuristicCounter()
    total = sum(message_tokens(m, Format.ANTHROPIC, counter) for m in msgs)
    comp = MessageCompactor(counter=counter, window=int(total / 0.9),
                            config=PlanConfig(keep_recent=0, low_watermark=0.2))
    r = asyncio.run(comp.compact_if_needed(msgs))
    assert r.compacted and len(r.removed) > 0
    assert msgs[start] in r.messages
    assert anthropic_problems(r.messages, thinking=True) == []


def test_plan_puts_the_loop_opener_in_the_floor():
    """plan() keeps the index of the loop's first assistant message even when the low
    watermark alone would evict it, and evicts older turns."""
    msgs, start = _history(6)
    counter = HeuristicCounter()
    counts = [message_tokens(m, Format.ANTHROPIC, counter) for m in msgs]
    loop_tail = sum(counts[-2:])
    p = plan(msgs, Format.ANTHROPIC, counts, overhead_tokens=0, window=int(sum(counts) / 0.9),
             config=PlanConfig(keep_recent=0, low_watermark=loop_tail / (sum(counts) / 0.9)
                               + 0.01))
    assert p.compact and start in p.kept and (start + 1) in p.kept
    assert 0 in p.evicted
