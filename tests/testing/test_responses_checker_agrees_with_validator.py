"""The core validator (`compactor.validate`, `Format.RESPONSES`) and the independent
checker (`compactor.testing._rules.responses_problems`) flag the same Responses rules at
the same input items: one hand-built input per documented rule, and seeded random inputs."""

from __future__ import annotations

import random

import pytest

from compactor import Format, validate
from compactor.testing._rules import responses_problems

USER = {"role": "user", "content": "Flights to Oslo?"}
ASSISTANT = {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Looking."}]}
REASONING = {"type": "reasoning", "id": "rs_1", "summary": []}
REFERENCE = {"type": "item_reference", "id": "fc_stored"}


def call(cid: str, arguments: object = "{}") -> dict:
    return {"type": "function_call", "call_id": cid, "name": "search", "arguments": arguments}


def out(cid: str) -> dict:
    return {"type": "function_call_output", "call_id": cid, "output": "3 flights"}


# one input per rule of docs/provider-rules.md, "OpenAI Responses API"
CASES = {
    "unanswered_call": [USER, call("a"), USER],
    "orphan_result": [USER, out("a")],
    "duplicate_result": [USER, call("a"), out("a"), out("a")],
    "duplicate_tool_id": [USER, call("a"), out("a"), USER, call("a"), out("a")],
    "orphan_reasoning": [USER, REASONING, USER],
    "arguments_type": [USER, call("a", {"q": 1}), out("a")],
    "role": [{"role": "tool", "content": "x"}],
    "empty_content": [{"role": "user", "content": []}],
    "empty_messages": [],
    "shape": [USER, ["not", "an", "item"], USER],
}


def both(items: list, open_end: bool) -> tuple[set, set]:
    core = {(v.rule, v.index) for v in validate(items, Format.RESPONSES,
                                                allow_open_calls_at_end=open_end)}
    ours = {(b.rule, b.index) for b in responses_problems(items, open_calls_at_end=open_end)}
    return core, ours


@pytest.mark.parametrize("rule", sorted(CASES))
def test_documented_rule_is_flagged_by_both(rule):
    """The hand-built input breaking `rule` is flagged with `rule` by both checkers, at
    the same items."""
    core, ours = both(CASES[rule], open_end=False)
    assert rule in {r for r, _ in ours}
    assert core == ours


def test_random_inputs_get_the_same_findings():
    """On 3,000 seeded random inputs (calls, outputs, reasoning, messages of every role,
    hosted-tool, compaction and item_reference items, outputs of calls no item opened),
    both checkers report the same (rule, item index) pairs, with and without open calls
    allowed at the end."""
    pool = [USER, ASSISTANT, call("c1"), call("c2"), out("c1"), out("c2"), REASONING,
            {"role": "tool", "content": "x"}, {"role": "user", "content": []},
            {"role": "developer", "content": "terse"}, call("c3", {}), out("c3"),
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {"type": "compaction", "encrypted_content": "gAAAA"}, REFERENCE, out("stored")]
    rng = random.Random(20261129)
    flagged = accepted_on_reference = 0
    for _ in range(3000):
        items = [USER] + [rng.choice(pool) for _ in range(rng.randint(0, 7))]
        for open_end in (False, True):
            core, ours = both(items, open_end)
            assert core == ours, items
            flagged += bool(ours)
        # an output of a call no item opened, after a reference in its round, found valid
        round_start = 0
        for k, item in enumerate(items):
            if isinstance(item, dict) and item.get("type", "message") == "message":
                round_start = k
            elif item == out("stored") and REFERENCE in items[round_start:k] \
                    and not any(r == "orphan_result" and i == k for r, i in ours):
                accepted_on_reference += 1
    assert flagged > 1000           # the inputs really exercise the rules
    assert accepted_on_reference > 20   # ...and the reference rule (46 on this seed)
