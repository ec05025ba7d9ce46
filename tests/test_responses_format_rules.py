"""Responses API items as a wire format: detection, item helpers and the validator's rules.

The expected rule codes come from the Responses API's own 400 errors (quoted in
``compactor._validate``'s docstring): a call needs its output before the next message
item, an output needs an open call with its ``call_id``, ``arguments`` is a JSON string,
and a reasoning item is followed directly by the item it belongs to.
"""

import json

import pytest

from compactor import Format, InvalidHistoryError, MessageCompactor, detect_format, validate
from compactor._format import calls_answered, calls_opened, is_summary, leading_system_count, \
    role_of, text_of
from compactor._plan import summary_message
from compactor._validate import PAIRING_RULES, fix_for, raise_for

R = Format.RESPONSES


def user(text):
    return {"role": "user", "content": text}


def msg(role, text):
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def call(cid, name="lookup", args=None):
    return {"type": "function_call", "call_id": cid, "name": name,
            "arguments": json.dumps(args or {"q": cid}), "id": f"fc_{cid}"}


def out(cid, text="ok"):
    return {"type": "function_call_output", "call_id": cid, "output": text}


def reasoning(rid, text="thinking about it", encrypted=None):
    item = {"type": "reasoning", "id": rid, "summary": [{"type": "summary_text", "text": text}]}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def rules(items, **kw):
    return [v.rule for v in validate(items, R, **kw)]


def test_responses_items_are_detected_and_chat_histories_are_not():
    """Typed items, role-less items or input_text blocks mean Responses; chat histories keep
    their format, a system message first included."""
    assert detect_format([user("hi"), call("a"), out("a")]) is R
    assert detect_format([{"role": "system", "content": "s"}, user("hi"), msg("assistant", "x")]) is R
    assert detect_format([{"type": "compaction", "encrypted_content": "zz"}]) is R
    assert detect_format([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]) is R
    assert detect_format([{"role": "system", "content": "s"}, user("hi")]) is Format.OPENAI
    assert detect_format([user("hi"), {"role": "tool", "tool_call_id": "a", "content": "x"}]) \
        is Format.OPENAI
    assert detect_format([user("hi"), {"role": "assistant", "content": "x"}]) is Format.ANTHROPIC
    with pytest.raises(InvalidHistoryError):
        detect_format([{"content": "no role, no type"}])


def test_item_helpers_read_roles_calls_and_text():
    """Model items read as assistant, outputs as tool; calls and outputs pair by call_id."""
    assert [role_of(x, R) for x in (reasoning("r"), call("a"), out("a"), msg("user", "u"),
                                    {"type": "compaction", "encrypted_content": "x"})] \
        == ["assistant", "assistant", "tool", "user", "compaction"]
    assert calls_opened(call("a"), R) == ["a"] and calls_answered(out("a"), R) == ["a"]
    assert calls_opened(out("a"), R) == [] and calls_answered(call("a"), R) == []
    assert text_of(call("a", "get_order", {"id": "W1"})) == 'get_order({"id": "W1"})'
    assert text_of(out("a", "status: shipped")) == "status: shipped"
    assert text_of(reasoning("r", "plan: look up W1")) == "plan: look up W1"
    assert text_of(msg("assistant", "hello")) == "hello"
    items = [{"role": "system", "content": "s"}, msg("developer", "d"), user("u")]
    assert leading_system_count(items, R) == 2


def test_valid_responses_history_has_no_violations():
    """Parallel calls with their outputs, reasoning before its call and before its message,
    and a compaction item are all legal."""
    items = [{"role": "system", "content": "s"}, user("hi"),
             reasoning("r1"), call("a"), call("b"), out("a"), out("b"),
             reasoning("r2"), msg("assistant", "done"),
             {"type": "compaction", "encrypted_content": "opaque"}, user("next")]
    assert validate(items, R) == []


def test_unanswered_call_is_reported_with_its_index_and_call_id():
    """A call whose output does not come before the next message item is unanswered."""
    items = [user("hi"), call("a"), msg("assistant", "meanwhile"), out("a"), user("q")]
    v = validate(items, R)
    assert [(x.rule, x.index, x.tool_id) for x in v] == [
        ("unanswered_call", 1, "a"), ("orphan_result", 3, "a")]
    with pytest.raises(InvalidHistoryError) as e:
        raise_for(v, rules=PAIRING_RULES)
    assert e.value.rule == "unanswered_call" and e.value.tool_id == "a"
    assert fix_for("unanswered_call") in str(e.value)


def test_open_calls_are_allowed_only_at_the_end():
    """Calls in the trailing run of model items may wait for their outputs; not elsewhere."""
    assert rules([user("hi"), reasoning("r"), call("a"), call("b")]) == []
    assert rules([user("hi"), call("a")], allow_open_calls_at_end=False) == ["unanswered_call"]
    assert rules([user("hi"), call("a"), user("more")]) == ["unanswered_call"]


def test_orphan_duplicate_result_and_duplicate_call_id():
    """An output with no open call, one answered twice and a call_id used twice are flagged."""
    assert rules([user("hi"), out("x")]) == ["orphan_result"]
    assert rules([user("hi"), call("a"), out("a"), out("a"), user("q")]) == ["duplicate_result"]
    assert rules([user("hi"), call("a"), out("a"), user("q"), call("a"), out("a"), user("r")]) \
        == ["duplicate_tool_id"]


def test_arguments_must_be_a_json_string():
    """A function_call whose arguments is an object, not a string, is refused."""
    bad = dict(call("a"), arguments={"q": 1})
    assert rules([user("hi"), bad, out("a"), user("q")]) == ["arguments_type"]


def test_reasoning_must_be_followed_by_its_item():
    """A reasoning item followed by a user message, another reasoning item, an output or
    nothing is orphaned; followed by its call or assistant message it is fine."""
    assert rules([user("hi"), reasoning("r"), user("q")]) == ["orphan_reasoning"]
    assert rules([user("hi"), reasoning("r1"), reasoning("r2"), msg("assistant", "x")]) \
        == ["orphan_reasoning"]
    assert rules([user("hi"), reasoning("r")]) == ["orphan_reasoning"]
    assert rules([user("hi"), call("a"), reasoning("r"), out("a"), user("q")]) \
        == ["orphan_reasoning"]
    assert rules([user("hi"), reasoning("r"), msg("assistant", "x")]) == []


def test_shape_role_and_empty_content_are_checked():
    """An item without a string type or role, a role the Responses API lacks and a message
    with empty content are flagged."""
    assert rules([user("hi"), {"content": "x"}]) == ["shape"]
    assert rules([user("hi"), {"type": "message", "role": "tool", "content": "x"}]) == ["role"]
    assert rules([user("hi"), {"type": "function_call", "name": "f", "arguments": "{}"}]) \
        == ["shape"]
    assert rules([user("hi"), {"type": "message", "role": "assistant", "content": []}]) \
        == ["empty_content"]


def test_incremental_check_matches_the_full_check():
    """Checking only what a history grew by finds what the full check finds there."""
    base = [user("hi"), reasoning("r"), call("a"), call("b"), out("a")]
    grown = base + [user("too early"), out("b")]
    full = [(v.rule, v.index) for v in validate(grown, R)]
    part = [(v.rule, v.index) for v in validate(grown, R, start=len(base))]
    assert full == part == [("unanswered_call", 3), ("orphan_result", 6)]
    ok = base + [out("b"), msg("assistant", "done")]
    assert validate(ok, R, start=len(base)) == []


def test_summary_is_a_developer_message_item_after_the_system_items():
    """The summary item is a developer message with input_text, recognised as a summary."""
    sm = summary_message("the user wants order W1", R)
    assert sm["type"] == "message" and sm["role"] == "developer"
    assert sm["content"][0]["type"] == "input_text"
    assert "order W1" in sm["content"][0]["text"]
    assert is_summary(sm, R) and not is_summary(msg("developer", "be brief"), R)
    assert validate([sm, user("hi")], R) == []


async def test_invalid_input_is_refused_with_a_typed_error():
    """The compactor refuses a Responses history with an orphaned output, or with a
    reasoning item the API would refuse, by a typed error naming the rule and its fix."""
    c = MessageCompactor()
    with pytest.raises(InvalidHistoryError) as e:
        await c.compact_if_needed([user("hi"), out("zz")], window=4000, fmt=R)
    assert e.value.rule == "orphan_result"
    twice = [user("hi"), reasoning("r1"), reasoning("r2"), msg("assistant", "x"), user("q")]
    with pytest.raises(InvalidHistoryError) as e:
        await c.compact_if_needed(twice, window=4000, fmt=R)
    assert e.value.rule == "orphan_reasoning" and e.value.index == 1
    assert "drop the first" in str(e.value)
