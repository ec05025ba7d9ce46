"""``compactor.validate`` flags every documented provider rule that the independent
checker (``compactor.testing._rules``, written separately from the providers' docs) flags,
on one hand-built history per rule; the loopback server rejects such a request by the
independent checker."""

import httpx
import pytest

from compactor import Format, validate
from compactor.testing import LoopbackServer
from compactor.testing._rules import anthropic_problems, openai_problems

from builders import a_calls, a_text, a_user, o_calls


def _doubled_result():
    call, res = a_calls("a", "b")
    return [a_user("hi"), call, dict(res, content=[*res["content"], res["content"][0]])]


def _anthropic_cases():
    call, res = a_calls("a")
    call2, res2 = a_calls("b")
    return {
        "duplicate_result": _doubled_result(),
        "unanswered_call": [a_user("hi"), call, a_user("no results"), a_text("x"), a_user("q")],
        "orphan_result": [a_user("hi"), a_text("no call"), res],
        "result_order": [a_user("hi"), call,
                         dict(res, content=[{"type": "text", "text": "first"}, *res["content"]])],
        "duplicate_tool_id": [a_user("hi"), call, res, call, res],
        "misplaced_block": [a_user("hi"), call, res,
                            {"role": "user", "content": a_calls("c")[0]["content"]},
                            a_text("x"), a_user("q")],
        "role": [{"role": "system", "content": "s"}, a_user("hi")],
        "empty_content": [a_user("")],
        "empty_messages": [],
        "shape": [a_user("hi"), ["not", "a", "message"], a_user("again")],
        # results repeated two messages after their call: not immediately after it
        "orphan_result/late": [a_user("hi"), call2, res2, a_text("x"), res2, a_user("q")],
    }


def _openai_cases():
    ok = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
          *o_calls("f", "g"), {"role": "assistant", "content": "done"}]
    calls = o_calls("f")
    calls[0]["tool_calls"][0]["function"]["arguments"] = {"q": 1}
    return {
        "unanswered_call": ok[:3] + ok[4:],
        "orphan_result": [{"role": "user", "content": "u"},
                          {"role": "tool", "tool_call_id": "zz", "content": "x"}],
        "duplicate_result": ok[:4] + [ok[3]] + ok[4:],
        "arguments_type": [{"role": "user", "content": "u"}, *calls,
                           {"role": "assistant", "content": "ok"}],
        "role": [{"role": "human", "content": "u"}],
        "empty_content": [{"role": "user", "content": ""}],
        "duplicate_result/after-batch": ok[:5] + [ok[3]] + ok[5:],
        "empty_content/assistant": [{"role": "user", "content": "u"},
                                    {"role": "assistant", "content": None},
                                    {"role": "assistant", "content": ""},
                                    {"role": "user", "content": "k"}],
        # a bad message does not stop the check: what follows it is judged too
        "role/then-orphan": [{"role": "human", "content": "u"},
                             {"role": "tool", "tool_call_id": "zz", "content": "x"}],
        "shape/then-orphan": [{"role": "user", "content": "u"}, ["not", "a", "message"],
                              {"role": "tool", "tool_call_id": "zz", "content": "x"}],
        "shape": [{"role": "user", "content": "u"}, ["not", "a", "message"]],
    }


def _agree(found, violations, msgs) -> None:
    """The validator reports the same (rule, message index) pairs as the checker, each with
    a detail text, and names a tool id of the history for every pairing rule."""
    assert sorted((b.rule, b.index) for b in found) == \
        sorted((v.rule, v.index) for v in violations)
    assert all(v.detail for v in violations)
    ids = _tool_ids(msgs)
    for v in violations:
        if v.rule in ("unanswered_call", "orphan_result", "duplicate_result", "duplicate_tool_id",
                      "arguments_type"):
            assert v.tool_id in ids, v
    indexes = [-1 if v.index is None else v.index for v in violations]
    assert indexes == sorted(indexes)


def _tool_ids(msgs) -> set[str]:
    out = set()
    for m in (m for m in msgs if isinstance(m, dict)):
        for b in m.get("content") if isinstance(m.get("content"), list) else []:
            out.update(str(b[k]) for k in ("id", "tool_use_id") if k in b)
        out.update(str(c["id"]) for c in m.get("tool_calls") or [])
        if "tool_call_id" in m:
            out.add(str(m["tool_call_id"]))
    return out


@pytest.mark.parametrize("rule", sorted(_anthropic_cases()))
def test_anthropic_rule_is_flagged_by_both_checkers(rule):
    """Each broken Anthropic history is flagged with its rule by the independent checker
    and by compactor.validate (e.g. a doubled tool_result is duplicate_result), at the same
    message indexes."""
    msgs = _anthropic_cases()[rule]
    found = anthropic_problems(msgs, open_calls_at_end=True)
    assert rule.split("/")[0] in {b.rule for b in found}
    _agree(found, validate(msgs, Format.ANTHROPIC), msgs)


@pytest.mark.parametrize("rule", sorted(_openai_cases()))
def test_openai_rule_is_flagged_by_both_checkers(rule):
    """Each broken OpenAI history is flagged with its rule by both checkers, at the same
    message indexes."""
    msgs = _openai_cases()[rule]
    found = openai_problems(msgs, open_calls_at_end=True)
    assert rule.split("/")[0] in {b.rule for b in found}
    _agree(found, validate(msgs, Format.OPENAI), msgs)


@pytest.mark.parametrize("fmt", [Format.ANTHROPIC, Format.OPENAI])
def test_calls_open_at_the_end_are_unanswered_only_when_not_allowed(fmt):
    """Tool calls in the last message are allowed while the agent runs its tools, and are
    unanswered_call (one per id, at that message) when the request must be complete."""
    if fmt is Format.ANTHROPIC:
        call, _ = a_calls("a", "b")
        msgs, check = [a_user("hi"), call], anthropic_problems
    else:
        msgs, check = [{"role": "user", "content": "u"}, o_calls("f", "g")[0]], openai_problems
    assert validate(msgs, fmt) == [] == check(msgs, open_calls_at_end=True)
    closed = validate(msgs, fmt, allow_open_calls_at_end=False)
    assert [(v.rule, v.index) for v in closed] == [("unanswered_call", 1)] * 2
    _agree(check(msgs), closed, msgs)


def test_valid_histories_pass_both_checkers():
    """Pairs, parallel calls, thinking and same-role runs are legal for both checkers."""
    call, res = a_calls("a", "b", "c", thinking=True)
    msgs = [a_user("hi"), a_user("again"), call, res, a_text("x"), a_text("y"), a_user("ok")]
    assert anthropic_problems(msgs, thinking=True) == [] == validate(msgs, Format.ANTHROPIC)
    o = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
         *o_calls("f", "g"), {"role": "assistant", "content": "done"}, {"role": "user", "content": "k"}]
    assert openai_problems(o) == [] == validate(o, Format.OPENAI)


def test_thinking_loop_in_progress_must_open_with_its_thinking_block():
    """With extended thinking on, a tool loop in progress whose first assistant message
    lost its thinking block is flagged; the same loop with it is accepted."""
    c1, r1 = a_calls("a", thinking=True)
    c2, r2 = a_calls("b")
    assert anthropic_problems([a_user("go"), c1, r1, c2, r2], thinking=True) == []
    got = anthropic_problems([a_user("summary of earlier turns"), c2, r2], thinking=True)
    assert [(b.rule, b.index) for b in got] == [("thinking_first", 1)]
    assert anthropic_problems([a_user("summary of earlier turns"), c2, r2]) == []


def test_loopback_server_rejects_a_doubled_tool_result():
    """The loopback server answers a request with a doubled tool_result with HTTP 400 and
    records a duplicate_result violation (judged by the independent checker)."""
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": _doubled_result()}
    with LoopbackServer() as server:
        r = httpx.post(server.url + "/v1/messages", json=body, timeout=30,
                       headers={"x-api-key": "test-key", "anthropic-version": "2023-06-01"})
        assert r.status_code == 400
        assert [v.rule for v in server.violations] == ["duplicate_result"]
        ok = dict(body, messages=[a_user("hi")])
        r = httpx.post(server.url + "/v1/messages", json=ok, timeout=30,
                       headers={"x-api-key": "test-key", "anthropic-version": "2023-06-01"})
        assert r.status_code == 200 and len(server.violations) == 1


def test_incremental_validation_from_any_start_agrees_with_the_checker():
    """validate(start=k), which checks only what is new, finds nothing in a valid history
    for every k (including a start inside a batch of tool messages), and for a history
    whose second tool batch misses an answer it flags unanswered_call from every start
    up to that batch, as the independent checker does on the whole list."""
    head = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    ok = [*head, *o_calls("f", "g"), {"role": "assistant", "content": "done"},
          {"role": "user", "content": "more"}, *o_calls("h", "i", "j"),
          {"role": "assistant", "content": "ok"}, {"role": "user", "content": "k"}]
    assert openai_problems(ok) == []
    for k in range(1, len(ok) + 1):
        assert validate(ok, Format.OPENAI, start=k) == [], k
    broken = ok[:9] + ok[10:]  # the batch opened at index 7 loses its answer to "i"
    assert {b.rule for b in openai_problems(broken)} == {"unanswered_call"}
    for k in range(1, 10):
        assert "unanswered_call" in {v.rule for v in validate(broken, Format.OPENAI, start=k)}, k
    a_ok = [a_user("hi"), *a_calls("a", "b"), a_text("x"), a_user("y"), *a_calls("c"),
            a_user("z")]
    assert anthropic_problems(a_ok) == []
    for k in range(1, len(a_ok) + 1):
        assert validate(a_ok, Format.ANTHROPIC, start=k) == [], k


def test_a_violation_names_its_message_and_tool_id():
    """str(Violation) names the message index and the tool id when there are any, and the
    whole list otherwise."""
    call, _ = a_calls("a")
    v = validate([a_user("hi"), call, a_user("no results"), a_user("q")], Format.ANTHROPIC)[0]
    tid = call["content"][0]["id"]
    assert str(v).startswith("unanswered_call: messages[1] (id ") and repr(tid) in str(v)
    empty = validate([], Format.OPENAI)[0]
    assert str(empty).startswith("empty_messages: messages: ") and "(id" not in str(empty)
    role = validate([{"role": "human", "content": "u"}], Format.OPENAI)[0]
    assert str(role).startswith("role: messages[0]: ") and "(id" not in str(role)

