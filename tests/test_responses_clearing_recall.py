"""Responses items: old function_call_output items are cleared in place, a recall block
is placed as a user message item where the chat format places it, and shortening an
overflowing floor shortens an output's text -- each leaving a valid history."""

import asyncio
import json

from compactor import Format, HeuristicCounter, MessageCompactor, PlanConfig, validate
from compactor._clearing import CLEARED_PREFIX, clear, plan_clearings
from compactor._recall import RecallBlock, place_recall, render_message
from compactor.testing._rules import responses_problems

R = Format.RESPONSES


def user(text):
    return {"role": "user", "content": text}


def call(cid, name="read_file"):
    return {"type": "function_call", "call_id": cid, "name": name,
            "arguments": json.dumps({"path": f"/src/{cid}.py"})}


def out(cid, text):
    return {"type": "function_call_output", "call_id": cid, "output": text}


def answer(text):
    return {"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}


def _loop(n):
    items = [user("inspect the repository")]
    for t in range(n):
        items += [call(f"c{t}"), out(f"c{t}", f"file {t} body ABC-{t:03d}\n" + "code line\n" * 150),
                  answer(f"read file {t}"), user(f"continue {t}")]
    return items


def test_old_outputs_are_cleared_keeping_call_id_and_identifiers():
    """All but the last output are replaced by a placeholder naming the archive and the
    identifiers; the item keeps its type and call_id."""
    items = _loop(4)
    cands = plan_clearings(items, R, keep_last=1, min_tokens=10)
    assert [c.index for c in cands] == [2, 6, 10]
    assert cands[0].call_id == "c0" and cands[0].tool == "read_file"
    new = clear(items[2], [cands[0]], 7)
    assert new["type"] == "function_call_output" and new["call_id"] == "c0"
    assert new["output"].startswith(CLEARED_PREFIX) and "#7" in new["output"]
    assert "ABC-000" in new["output"]
    assert items[2]["output"].startswith("file 0")    # the caller's item is not changed
    assert plan_clearings([*items[:2], new, *items[3:]], R, keep_last=1, min_tokens=10)[0].index \
        == 6   # a cleared output is not cleared again


def test_compactor_clears_responses_outputs_before_summarizing():
    """With clearing on, a long tool loop is brought under the window by clearing old
    outputs first; what is sent stays valid for the independent checker."""
    comp = MessageCompactor(counter=HeuristicCounter(), window=3000,
                            config=PlanConfig(clear_tool_results=True, clear_keep_last=1,
                                              clear_min_tokens=50))
    history = [user("inspect the repository")]
    cleared_seen = False
    for t in range(8):
        history += [call(f"c{t}"), out(f"c{t}", f"file {t} ABC-{t:03d}\n" + "code line\n" * 150),
                    answer(f"read file {t}"), user(f"continue {t}")]
        r = asyncio.run(comp.compact_if_needed(history, fmt=R))
        assert responses_problems(list(r.messages)) == []
        cleared_seen = cleared_seen or any(
            str(m.get("output", "")).startswith(CLEARED_PREFIX) for m in r.messages)
        history = list(r.messages)
    assert cleared_seen


def test_recall_block_goes_before_the_last_user_item_or_after_a_tool_output():
    """A recall block is a user message item: before the newest user item, or after the
    last output when a tool loop is in progress."""
    block = RecallBlock("<recalled_context>order W1</recalled_context>", (3,), 5, "W1")
    items = [user("hi"), call("a"), out("a", "x"), answer("ok"), user("where is W1?")]
    placed = place_recall(items, R, block)
    assert placed[-2] == {"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": block.text}]}
    assert placed[-1] is items[-1] and validate(placed, R) == []
    loop = items[:-1] + [call("b"), out("b", "y")]
    placed = place_recall(loop, R, block)
    assert placed[-1]["role"] == "user" and placed[:-1] == loop
    assert responses_problems(placed) == []


def test_recall_renders_calls_and_outputs_with_their_ids():
    """An archived call and output are rendered with their call_id and text."""
    assert render_message(4, call("a")) == '[4] function_call: (tool_call read_file id=a) ' \
        '{"path": "/src/a.py"}'
    assert render_message(5, out("a", "42 lines")) == \
        "[5] function_call_output: (tool_result for id=a) 42 lines"


def test_overflowing_floor_shortens_a_long_output():
    """With overflow="truncate_tool_results", a floor too big for the window has its long
    function_call_output shortened, and the result stays valid."""
    big = out("a", "row of data\n" * 2000)
    items = [user("hi"), call("a"), big]
    comp = MessageCompactor(counter=HeuristicCounter(), window=2000,
                            config=PlanConfig(overflow="truncate_tool_results"))
    r = asyncio.run(comp.compact_if_needed(items, fmt=R))
    short = r.messages[-1]
    assert short["type"] == "function_call_output" and short["call_id"] == "a"
    assert len(short["output"]) < len(big["output"]) and "characters removed" in short["output"]
    assert responses_problems(list(r.messages), open_calls_at_end=True) == []
