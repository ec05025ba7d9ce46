"""A Responses `item_reference` may stand for a stored `function_call`: an output after it
in the same tool round is valid for the core validator and the independent checker, and a
compaction keeps or evicts the reference and the outputs that rely on it together."""

from __future__ import annotations

import asyncio
import json
import random

from compactor import Format, HeuristicCounter, MessageCompactor, group_units, validate
from compactor.testing._rules import responses_problems

R = Format.RESPONSES


def user(text):
    return {"role": "user", "content": text}


def answer(text):
    return {"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}


def ref(item_id):
    return {"type": "item_reference", "id": item_id}


def call(cid):
    return {"type": "function_call", "call_id": cid, "name": "lookup",
            "arguments": json.dumps({"q": cid})}


def out(cid, text="3 flights"):
    return {"type": "function_call_output", "call_id": cid, "output": text}


def reasoning(rid):
    return {"type": "reasoning", "id": rid, "summary": [{"type": "summary_text", "text": "plan"}],
            "encrypted_content": "gAAAAB" * 10}


def findings(items):
    """(rule, index) pairs of the core validator and of the independent checker."""
    core = {(v.rule, v.index) for v in validate(items, R, allow_open_calls_at_end=False)}
    ours = {(b.rule, b.index) for b in responses_problems(items)}
    return core, ours


def test_output_after_a_reference_is_accepted_by_both_checkers():
    """[user, item_reference, function_call_output, assistant message] breaks no rule for
    either checker: the reference may be the output's stored call."""
    items = [user("Flights to Oslo?"), ref("fc_stored"), out("call_stored"),
             answer("Three flights.")]
    assert findings(items) == (set(), set())


def test_output_with_neither_call_nor_reference_is_still_an_orphan():
    """Without a reference (or with one only in an earlier round) an output whose call no
    item opened is `orphan_result` for both checkers."""
    alone = [user("Flights to Oslo?"), out("call_stored"), answer("Three flights.")]
    assert findings(alone) == ({("orphan_result", 1)}, {("orphan_result", 1)})
    earlier_round = [user("Hi"), ref("fc_stored"), answer("Hello."), user("Flights?"),
                     out("call_stored"), answer("Three.")]
    assert findings(earlier_round) == ({("orphan_result", 4)}, {("orphan_result", 4)})


def test_reference_does_not_excuse_a_second_output_or_an_answered_call():
    """A call_id answered twice after a reference is `duplicate_result`, and an output of a
    call opened in an earlier round stays `orphan_result`, for both checkers."""
    twice = [user("q"), ref("fc_stored"), out("call_stored"), out("call_stored"), answer("a")]
    assert findings(twice) == ({("duplicate_result", 3)}, {("duplicate_result", 3)})
    old_call = [user("q"), call("c1"), out("c1"), answer("a"), user("again"), ref("fc_x"),
                out("c1"), answer("b")]
    assert findings(old_call) == ({("orphan_result", 6)}, {("orphan_result", 6)})


def test_incremental_check_agrees_with_the_full_check_on_references():
    """Validating only the items from `start` on (the check includes item `start - 1`)
    finds the same orphan and duplicate results there as validating the whole list, with
    references in the rounds."""
    items = [user("q"), call("c1"), out("c1"), answer("a"), user("again"), ref("fc_x"),
             call("c2"), out("c2"), out("c1"), out("stored"), out("stored"), answer("b")]
    full = {(v.rule, v.index) for v in validate(items, R)}
    assert full == {("orphan_result", 8), ("duplicate_result", 10)}
    for start in range(1, len(items)):
        part = {(v.rule, v.index) for v in validate(items, R, start=start)
                if v.rule in ("orphan_result", "duplicate_result")}
        assert part == {f for f in full if f[1] >= start - 1}, start


def test_reference_and_the_outputs_relying_on_it_are_one_unit():
    """The unit holding an item_reference reaches on to the last output of its round that
    answers no call of the round (past a turn in between), and no further."""
    items = [user("q"), ref("fc_a"), reasoning("rs_1"), call("c2"), out("c2"), out("stored"),
             answer("done"), user("next"), ref("fc_b"), answer("nothing relies on it")]
    spans = [(u.start, u.end) for u in group_units(items, R)]
    assert spans == [(0, 1), (1, 6), (6, 7), (7, 8), (8, 9), (9, 10)]


def _round(k, rng):
    """One user question and the model's work on it: a reference round (the stored call
    by reference, its output; sometimes a fresh call in between), or a plain call round."""
    big = "fare " * rng.randint(20, 120)
    q = user(f"question {k}: " + "detail " * rng.randint(5, 40))
    kind = k % 3
    if kind == 0:
        return [q, ref(f"fc_stored_{k}"), out(f"stored_{k}", f"R{k} " + big), answer(f"a{k}")]
    if kind == 1:
        return [q, ref(f"fc_stored_{k}"), reasoning(f"rs_{k}"), call(f"c{k}"),
                out(f"c{k}", "seat " * rng.randint(5, 60)), out(f"stored_{k}", f"R{k} " + big),
                answer(f"a{k}")]
    return [q, reasoning(f"rs_{k}"), call(f"c{k}"), out(f"c{k}", big), answer(f"a{k}")]


def test_compaction_keeps_or_evicts_a_reference_with_its_outputs():
    """An agent loop with a small window, reference rounds between plain call rounds:
    every compacted history passes both checkers, and in each one an item_reference is
    present exactly when the output relying on it is."""
    rng = random.Random(20261129)
    c = MessageCompactor(counter=HeuristicCounter(chars_per_token=1.0), window=3000)
    history = [{"role": "developer", "content": "You book flights."}]
    compactions = kept_refs = evicted_refs = 0
    for k in range(40):
        history = history + _round(k, rng)
        res = asyncio.run(c.compact_if_needed(history, fmt=R))
        sent = res.messages
        assert findings(sent) == (set(), set())
        compactions += res.compacted
        for j in range(k + 1):
            if j % 3 == 2:
                continue
            has_ref = ref(f"fc_stored_{j}") in sent
            has_out = any(m.get("type") == "function_call_output"
                          and m.get("call_id") == f"stored_{j}" for m in sent)
            assert has_ref == has_out, (k, j)
            kept_refs += has_ref
            evicted_refs += not has_ref
        history = list(sent)
    assert compactions >= 5           # the window really forced compactions
    assert kept_refs and evicted_refs  # both sides of the pairing were exercised
