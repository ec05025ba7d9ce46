"""The independent checker's Responses rules (`compactor.testing._rules.responses_problems`):
which item each documented rule points at, open calls at the end, stored conversations."""

from __future__ import annotations

import ast
from pathlib import Path

from compactor.testing import _rules
from compactor.testing._rules import responses_problems

USER = {"role": "user", "content": "Flights to Oslo?"}
ASSISTANT = {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Looking."}]}


def call(cid: str) -> dict:
    return {"type": "function_call", "call_id": cid, "name": "search", "arguments": "{}"}


def out(cid: str) -> dict:
    return {"type": "function_call_output", "call_id": cid, "output": "ok"}


def found(items, **kw) -> list[tuple[str, int | None]]:
    return [(b.rule, b.index) for b in responses_problems(items, **kw)]


def test_each_rule_points_at_the_offending_item():
    """Each broken rule is reported at the index of the input item that breaks it."""
    items = [USER, call("a"), out("a"), out("a"), out("z"), {"role": "tool", "content": "x"},
             {"type": "reasoning", "summary": []}, USER, call("b"), {"content": "no role"}]
    assert found(items) == [("duplicate_result", 3), ("orphan_result", 4), ("role", 5),
                            ("orphan_reasoning", 6), ("unanswered_call", 8), ("shape", 9)]


def test_open_calls_only_at_the_end_are_accepted_when_asked():
    """With `open_calls_at_end`, calls of the last model turn (nothing answering after
    them) may lack outputs; a call followed by a user message may not."""
    tail = [USER, ASSISTANT, call("a"), call("b")]
    assert found(tail, open_calls_at_end=True) == []
    assert found(tail) == [("unanswered_call", 2), ("unanswered_call", 3)]
    assert found(tail + [USER], open_calls_at_end=True) == [("unanswered_call", 2),
                                                            ("unanswered_call", 3)]
    assert found([USER, call("a"), call("b"), out("a")], open_calls_at_end=True) == [
        ("unanswered_call", 2)]


def test_stored_conversation_skips_only_the_orphan_rule():
    """In a request continuing a stored conversation an output may answer an unseen
    call, but answering it twice or a malformed call is still reported."""
    items = [out("stored"), out("stored"), {"type": "function_call", "call_id": "n",
                                            "name": "f", "arguments": {}}, out("n")]
    assert found(items, stateful=True) == [("duplicate_result", 1), ("arguments_type", 2)]
    assert ("orphan_result", 0) in found(items)


def test_string_input_and_empty_list():
    """A string input keeps every rule; an empty list or a non-list is `empty_messages`."""
    assert found("hello") == []
    assert found([]) == [("empty_messages", None)]
    assert found({"role": "user"}) == [("empty_messages", None)]


def test_checker_imports_nothing_from_the_core():
    """`_rules.py` imports only the standard library, so a bug in the compactor's own
    validator cannot hide itself in the checker that judges it."""
    tree = ast.parse(Path(_rules.__file__).read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert mods <= {"__future__", "collections.abc", "dataclasses", "typing"}
