"""The central validator agrees with the provider rules, for both formats."""

import pytest

from compactor import Format, InvalidHistoryError, MessageCompactor, validate
from compactor._validate import raise_for

from builders import a_calls, a_text, a_user, o_calls


def rules(msgs, fmt=Format.ANTHROPIC, **kw):
    return [v.rule for v in validate(msgs, fmt, **kw)]


def test_valid_anthropic_history_has_no_violations():
    """Pairs, parallel calls, thinking and consecutive same-role messages are legal."""
    call, res = a_calls("a", "b", "c", thinking=True)
    msgs = [a_user("hi"), a_user("again"), call, res, a_text("x"), a_text("y"), a_user("ok")]
    assert validate(msgs, Format.ANTHROPIC) == []


def test_unanswered_call_names_index_and_id():
    """A tool_use not answered by the next message is rejected with its index and id."""
    call, res = a_calls("a")
    msgs = [a_user("hi"), call, a_user("no results"), a_text("x"), a_user("q")]
    v = validate(msgs, Format.ANTHROPIC)
    assert [x.rule for x in v] == ["unanswered_call"]
    assert v[0].index == 1 and v[0].tool_id == call["content"][0]["id"]
    with pytest.raises(InvalidHistoryError) as e:
        raise_for(v)
    assert e.value.index == 1 and e.value.tool_id == call["content"][0]["id"]
    assert "messages[1]" in str(e.value)


def test_open_calls_allowed_only_at_the_end():
    """Calls in the last message may be pending; elsewhere they may not."""
    call, _ = a_calls("a")
    assert rules([a_user("hi"), call]) == []
    assert rules([a_user("hi"), call], allow_open_calls_at_end=False) == ["unanswered_call"]


def test_orphan_result_and_result_order():
    """A result without its call, and text before results, are both 400s."""
    call, res = a_calls("a")
    orphan = [a_user("hi"), a_text("no call"), res]
    assert "orphan_result" in rules(orphan)
    bad_order = dict(res, content=[{"type": "text", "text": "first"}, *res["content"]])
    assert "result_order" in rules([a_user("hi"), call, bad_order])


def test_duplicate_ids_roles_and_empty_content():
    """Duplicate tool_use ids, a system role in messages, and empty content are caught."""
    call, res = a_calls("a")
    assert "duplicate_tool_id" in rules([a_user("hi"), call, res, call, res])
    assert "role" in rules([{"role": "system", "content": "s"}, a_user("hi")])
    assert "empty_content" in rules([a_user("")])
    assert rules([]) == ["empty_messages"]


def test_openai_rules():
    """OpenAI: every tool_call answered before the next message; tool messages need a call;
    arguments must be a JSON string."""
    ok = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
          *o_calls("f", "g"), {"role": "assistant", "content": "done"}]
    assert validate(ok, Format.OPENAI) == []
    broken = ok[:3] + ok[4:]  # drop one tool answer
    v = validate(broken, Format.OPENAI)
    assert [x.rule for x in v] == ["unanswered_call"] and v[0].index == 2
    orphan = [{"role": "user", "content": "u"}, {"role": "tool", "tool_call_id": "zz", "content": "x"}]
    assert rules(orphan, Format.OPENAI) == ["orphan_result"]
    calls = o_calls("f")
    calls[0]["tool_calls"][0]["function"]["arguments"] = {"q": 1}
    assert "arguments_type" in rules([{"role": "user", "content": "u"}, *calls], Format.OPENAI)


def test_incremental_validation_matches_full():
    """Validating only the new tail (start=k) finds the same pairing errors at the boundary."""
    call, res = a_calls("a")
    msgs = [a_user("hi"), call, a_user("no results")]
    assert [v.rule for v in validate(msgs, Format.ANTHROPIC, start=2)] == ["unanswered_call"]
    o = [{"role": "user", "content": "u"}, *o_calls("f", "g")]
    assert validate(o, Format.OPENAI, start=3) == []
    assert rules(o[:3] + [{"role": "user", "content": "x"}], Format.OPENAI, ) == ["unanswered_call"]
    assert rules(o[:3] + [{"role": "user", "content": "x"}], Format.OPENAI, start=3) == ["unanswered_call"]


async def test_compactor_rejects_broken_history(counter):
    """compact_if_needed raises InvalidHistoryError, naming index and id, and loses nothing."""
    call, res = a_calls("a")
    msgs = [a_user("hi"), call, a_user("no results"), a_text("x"), a_user("q")]
    before = repr(msgs)
    with pytest.raises(InvalidHistoryError) as e:
        await MessageCompactor(counter=counter, window=1000).compact_if_needed(msgs)
    assert e.value.index == 1 and e.value.rule == "unanswered_call"
    assert repr(msgs) == before
