"""Responses items: turns move whole (parallel calls, reasoning), every item kind is
counted, and a compaction returns valid items with the summary in place."""

import asyncio
import copy
import json

from compactor import Format, MessageCompactor, group_units, message_tokens, validate
from compactor._tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, TOOL_BLOCK_OVERHEAD

R = Format.RESPONSES


class CharCounter:
    """One token per character: expected counts are the strings' lengths."""

    def count(self, text):
        return len(text)


def user(text):
    return {"role": "user", "content": text}


def call(cid, name="lookup"):
    return {"type": "function_call", "call_id": cid, "name": name,
            "arguments": json.dumps({"q": cid})}


def out(cid, text="ok"):
    return {"type": "function_call_output", "call_id": cid, "output": text}


def reasoning(rid, text="think", encrypted="gAAAAB" * 20):
    return {"type": "reasoning", "id": rid, "summary": [{"type": "summary_text", "text": text}],
            "encrypted_content": encrypted}


def answer(text):
    return {"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}


def spans(items):
    return [(u.start, u.end, u.kind) for u in group_units(items, R)]


def test_parallel_calls_their_outputs_and_reasoning_are_one_unit():
    """Reasoning, two parallel calls and both outputs form one turn; the answer its own."""
    items = [{"role": "system", "content": "s"}, user("hi"), reasoning("r1"), call("a"),
             call("b"), out("a"), out("b"), reasoning("r2"), answer("done"), user("q")]
    assert spans(items) == [(0, 1, "system"), (1, 2, "message"), (2, 7, "turn"),
                            (7, 9, "turn"), (9, 10, "message")]
    units = group_units(items, R)
    assert units[2].calls and units[2].thinking and not units[3].calls


def test_interleaved_calls_and_a_late_output_stay_with_their_call():
    """Call/output/call/output makes two turns; a unit reaches on to an output further away."""
    items = [user("hi"), call("a"), out("a"), call("b"), out("b"), user("q")]
    assert spans(items) == [(0, 1, "message"), (1, 3, "turn"), (3, 5, "turn"), (5, 6, "message")]
    late = [user("hi"), call("a"), call("b"), out("a"), {"type": "web_search_call", "id": "ws"},
            out("b"), user("q")]
    assert (1, 6, "turn") in spans(late)


def test_compaction_and_unknown_items_are_units_of_their_own():
    """A compaction item and an unknown item type are single units, passed through."""
    items = [{"type": "compaction", "encrypted_content": "x"}, user("hi"),
             {"type": "some_future_item", "id": "z"}, answer("a")]
    assert spans(items) == [(0, 1, "message"), (1, 2, "message"), (2, 3, "message"),
                            (3, 4, "turn")]


def test_every_item_kind_is_counted():
    """Calls count name and arguments, outputs their text and images, reasoning its summary
    and encrypted content, messages their text blocks."""
    c = CharCounter()
    fc = call("a", "get")
    assert message_tokens(fc, R, c) == MESSAGE_OVERHEAD + TOOL_BLOCK_OVERHEAD + 3 + len(
        fc["arguments"])
    assert message_tokens(out("a", "x" * 50), R, c) == MESSAGE_OVERHEAD + TOOL_BLOCK_OVERHEAD + 50
    img = {"type": "function_call_output", "call_id": "a",
           "output": [{"type": "input_text", "text": "abc"},
                      {"type": "input_image", "image_url": "data:..."}]}
    assert message_tokens(img, R, c) == MESSAGE_OVERHEAD + TOOL_BLOCK_OVERHEAD + 3 + IMAGE_TOKENS
    rs = reasoning("r", "plan", encrypted="e" * 400)
    assert message_tokens(rs, R, c) == MESSAGE_OVERHEAD + 4 + 100
    assert message_tokens(answer("hello"), R, c) == MESSAGE_OVERHEAD + 5
    assert message_tokens(user("hey"), R, c) == MESSAGE_OVERHEAD + 3
    comp = {"type": "compaction", "encrypted_content": "c" * 80}
    assert message_tokens(comp, R, c) == MESSAGE_OVERHEAD + 20
    doc = {"role": "user", "content": [{"type": "input_text", "text": "read"},
                                       {"type": "input_file", "filename": "a.pdf",
                                        "file_data": "Q" * 4000}]}
    assert message_tokens(doc, R, c) == MESSAGE_OVERHEAD + 4 + 5 + 1000
    other = {"type": "web_search_call", "id": "w"}
    assert message_tokens(other, R, c) > MESSAGE_OVERHEAD


def _history(turns):
    items = [{"role": "developer", "content": "You are a shop agent."}, user("start")]
    for k in range(turns):
        items += [reasoning(f"r{k}", f"step {k}"), call(f"c{k}a"), call(f"c{k}b"),
                  out(f"c{k}a", f"order W{k:04d} " * 40), out(f"c{k}b", "stock ok " * 30),
                  answer(f"done {k}"), user(f"next {k}")]
    return items


def test_compaction_returns_valid_items_with_the_summary_after_the_system_items():
    """A compacted Responses history is valid, keeps the developer prompt first, puts the
    developer summary item next, and keeps reasoning items byte for byte."""
    items = _history(30)
    before = copy.deepcopy(items)
    res = asyncio.run(MessageCompactor().compact_if_needed(items, window=4000, fmt=R))
    assert res.compacted
    assert validate(res.messages, R, allow_open_calls_at_end=False) == []
    assert res.messages[0] == items[0]
    sm = res.messages[1]
    assert sm["type"] == "message" and sm["role"] == "developer"
    assert sm["content"][0]["text"].startswith("<conversation_summary>")
    kept_rs = [m for m in res.messages if m.get("type") == "reasoning"]
    assert kept_rs and all(m in before for m in kept_rs)
    assert items == before   # the caller's items are not changed


def test_compacting_again_rolls_the_summary_into_one_item():
    """A second compaction on the continued history replaces the summary, never adds one."""
    c = MessageCompactor()
    items = _history(30)
    first = asyncio.run(c.compact_if_needed(items, window=4000, fmt=R))
    more = list(first.messages) + _history(30)[2:]
    second = asyncio.run(c.compact_if_needed(more, window=4000, fmt=R))
    assert second.compacted
    summaries = [m for m in second.messages if m.get("role") == "developer"
                 and "<conversation_summary>" in json.dumps(m)]
    assert len(summaries) == 1
    assert validate(second.messages, R) == []
