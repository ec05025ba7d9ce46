"""The fix in an InvalidHistoryError (and in replay's stderr line) is the fix of the rule
that failed: role 'human' gets a hint about roles, not the tool-pairing text, and every
provider rule has its own hint."""

from __future__ import annotations

import asyncio

import pytest

from compactor import HeuristicCounter, MessageCompactor
from compactor._errors import InvalidHistoryError
from compactor._format import Format
from compactor._validate import raise_for, validate

from cli_support import compactor, good_conversation, write_jsonl

U = {"role": "user", "content": "book a flight"}
A = {"role": "assistant", "content": "done"}
USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                         "input": {}}]}
RES = {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
OAI_CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}

#: rule -> (format, a history breaking it, words its fix must hold -- written here, from
#: what a caller has to change, not copied from the code)
CASES = {
    "empty_messages": (Format.ANTHROPIC, [], "at least one"),
    "shape": (Format.ANTHROPIC, [5], "string 'role'"),
    "role": (Format.ANTHROPIC, [{"role": "human", "content": "hi"}], "'human' -> 'user'"),
    "empty_content": (Format.ANTHROPIC, [{"role": "user", "content": ""}], "non-empty content"),
    "misplaced_block": (Format.ANTHROPIC, [{"role": "user", "content": USE["content"]}],
                        "tool_use blocks in assistant messages"),
    "duplicate_tool_id": (Format.ANTHROPIC, [U, USE, {"role": "user", "content": [RES]}, USE,
                                             {"role": "user", "content": [RES]}], "its own id"),
    "unanswered_call": (Format.ANTHROPIC, [U, USE, U], "follow every tool call"),
    "orphan_result": (Format.ANTHROPIC, [U, A, {"role": "user", "content": [RES]}],
                      "drop the result"),
    "duplicate_result": (Format.ANTHROPIC, [U, USE, {"role": "user", "content": [RES, RES]}],
                         "answer each tool call once"),
    "result_order": (Format.ANTHROPIC, [U, USE, {"role": "user", "content": [
        {"type": "text", "text": "here"}, RES]}], "tool_result blocks first"),
    "arguments_type": (Format.OPENAI, [U, OAI_CALL, {"role": "tool", "tool_call_id": "c1",
                                                     "content": "ok"}], "JSON string"),
}

#: Words of the tool-pairing fix that a rule about something else must not carry.
PAIRING_WORDS = "results follow it"


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_carries_its_own_fix(rule):
    """The error raised for a history breaking RULE names RULE and ends with its fix."""
    fmt, msgs, words = CASES[rule]
    found = [v for v in validate(msgs, fmt) if v.rule == rule]
    assert found, validate(msgs, fmt)
    with pytest.raises(InvalidHistoryError) as info:
        raise_for(found)
    text = str(info.value)
    assert info.value.rule == rule and f"{rule}:" in text
    fix = text.split("; fix: ", 1)[1]
    assert words in fix and info.value.fix == fix
    assert PAIRING_WORDS not in text


def test_fixes_differ_between_rules():
    """No two rules share one generic fix text."""
    fixes = []
    for rule, (fmt, msgs, _) in CASES.items():
        v = next(v for v in validate(msgs, fmt) if v.rule == rule)
        fixes.append(v.fix)
    assert len(set(fixes)) == len(CASES)


def test_compact_if_needed_on_role_human():
    """compact_if_needed on a 'human'/'bot' history raises InvalidHistoryError whose fix is
    about roles, with no tool-pairing text."""
    comp = MessageCompactor(counter=HeuristicCounter())
    msgs = [{"role": "human", "content": "hi"}, {"role": "bot", "content": "hello"},
            {"role": "human", "content": "and?"}]
    with pytest.raises(InvalidHistoryError) as info:
        asyncio.run(comp.compact_if_needed(msgs, window=4000, model="x"))
    assert info.value.rule == "role"
    assert "'human' -> 'user'" in str(info.value)
    assert PAIRING_WORDS not in str(info.value) and "tool call" not in str(info.value)


def test_replay_line_carries_the_same_fix(tmp_path):
    """replay's stderr line for an orphan tool_result carries the orphan_result fix, not
    another rule's."""
    fmt, msgs, words = CASES["orphan_result"]
    path = write_jsonl(tmp_path / "o.jsonl", [good_conversation("g"),
                                              {"id": "o", "messages": [*msgs, A]}])
    run = compactor("replay", path, "--window", "4000", "--counter", "heuristic", cwd=tmp_path)
    assert run.code == 2 and len(run.err_lines) == 1
    assert ": orphan_result: " in run.err_lines[0] and words in run.err_lines[0]
