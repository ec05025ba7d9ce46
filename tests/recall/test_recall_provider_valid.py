"""A request with a recall block placed is valid for the provider, by the independent
checker, whatever the history ends with."""

from __future__ import annotations

import pytest

from compactor._format import Format
from compactor._recall import RecallBlock, place_recall
from compactor.testing._rules import anthropic_problems, openai_problems

from builders import a_calls, a_user, anthropic_session, o_calls

BLOCK = RecallBlock('<recalled_context archive_refs="3">\n[3] user: x\n</recalled_context>',
                    (3,), 20, "q")


def _alternates(msgs):
    return all(a["role"] != b["role"] for a, b in zip(msgs, msgs[1:]))


def _anthropic_endings():
    base = anthropic_session(3)                          # ends with a user text turn
    call, res = a_calls("read_file", "grep")
    mid_loop = base[:-1] + [a_user("Look again at the parser."), call, res]  # ends with results
    listed = base[:-1] + [{"role": "user", "content": [{"type": "text", "text": "Go on."}]}]
    thinking_call, thinking_res = a_calls("run_tests", thinking=True)
    thinking = base[:-1] + [a_user("Run them."), thinking_call, thinking_res]
    return {"user_text": base, "tool_results_last": mid_loop, "listed_content": listed,
            "thinking_loop": thinking}


@pytest.mark.parametrize("ending", sorted(_anthropic_endings()))
def test_anthropic_request_with_recall_is_valid(ending):
    """Anthropic: the block joins the last user message; roles still alternate, the
    independent checker finds nothing (extended thinking on for the thinking loop)."""
    work = _anthropic_endings()[ending]
    out = place_recall(work, Format.ANTHROPIC, BLOCK)
    assert len(out) == len(work)
    assert anthropic_problems(out, thinking=ending == "thinking_loop") == []
    assert _alternates(out) == _alternates(work)
    assert out[-1]["content"][-1] == {"type": "text", "text": BLOCK.text}


def test_openai_request_with_recall_before_the_newest_user_turn_is_valid():
    """OpenAI, last message a user turn: the block is a user message just before it."""
    work = ([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
            + o_calls("search") + [{"role": "assistant", "content": "done"},
                                   {"role": "user", "content": "and now?"}])
    out = place_recall(work, Format.OPENAI, BLOCK)
    assert openai_problems(out) == []
    assert out[-1] is work[-1] and out[-2] == {"role": "user", "content": BLOCK.text}


def test_openai_request_with_recall_in_a_tool_loop_is_valid():
    """OpenAI, last message a tool result: the block follows the results (inserting it
    before the newest user turn would not move, but splitting the batch would be invalid)."""
    work = ([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
            + o_calls("search", "fetch"))
    out = place_recall(work, Format.OPENAI, BLOCK)
    assert openai_problems(out) == []
    assert out[:-1] == work and out[-1]["content"] == BLOCK.text


def test_empty_block_changes_nothing():
    """Nothing recalled: the same messages, the same objects."""
    work = anthropic_session(2)
    out = place_recall(work, Format.ANTHROPIC, RecallBlock("", (), 0, "q"))
    assert all(a is b for a, b in zip(out, work)) and len(out) == len(work)
