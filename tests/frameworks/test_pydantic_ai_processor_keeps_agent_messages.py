"""CompactingHistoryProcessor called directly on a history: what it returns is built from
the agent's own messages, keeps call and return parts together and keeps the system
prompt."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic_ai")

from pydantic_ai.messages import (ModelRequest, ModelResponse, SystemPromptPart,  # noqa: E402
                                  ToolCallPart, ToolReturnPart, UserPromptPart)

from compactor import Format, MessageCompactor, PlanConfig, validate  # noqa: E402
from compactor.adapters.pydantic_ai import (CompactingHistoryProcessor,  # noqa: E402
                                            from_pydantic_ai, to_pydantic_ai)

from builders import anthropic_session  # noqa: E402

pytestmark = pytest.mark.timeout(60)
SYSTEM = "You fix bugs."


def _processor(**kw) -> CompactingHistoryProcessor:
    return CompactingHistoryProcessor(MessageCompactor(window=3000, **kw), session_id="s")


async def test_a_history_under_the_window_comes_back_as_it_came():
    """Under the threshold the processor returns the very list it was given."""
    history = to_pydantic_ai(anthropic_session(2, words=5), system=SYSTEM)
    assert await _processor()(None, history) is history


async def test_a_compaction_returns_the_summary_with_the_system_prompt_then_own_messages():
    """Over the window: a new ModelRequest with the agent's SystemPromptPart and the summary,
    then a tail of the agent's own message objects (identity) that starts on a pair
    boundary; the result converts to a valid, smaller history with the same system prompt."""
    history = to_pydantic_ai(anthropic_session(30), system=SYSTEM)
    proc = _processor()
    out = await proc(None, history)
    assert proc.last_result.compacted
    first, *kept = out
    assert isinstance(first, ModelRequest)
    assert [type(p) for p in first.parts] == [SystemPromptPart, UserPromptPart]
    assert first.parts[0] is history[0].parts[0]
    assert first.parts[1].content.startswith("<conversation_summary>")
    assert all(a is b for a, b in zip(kept, history[len(history) - len(kept):]))
    assert len(kept) < len(history) // 2
    assert not any(isinstance(p, ToolReturnPart) for p in kept[0].parts)
    msgs, system = from_pydantic_ai(out)
    assert system == SYSTEM and validate(msgs, Format.ANTHROPIC) == []
    # the next request (the result plus a new turn) continues the session
    more = [*out, ModelRequest(parts=[UserPromptPart("and then?")])]
    assert await proc(None, more) is more
    assert proc.compactor.session("s").compaction_count == 1


async def test_cleared_tool_returns_are_copies_of_the_agents_requests():
    """With tool-result clearing, a request whose returns were cleared comes back as a copy
    of the agent's request: same parts and call ids, the cleared content replaced, the
    original left untouched."""
    history = to_pydantic_ai(anthropic_session(12), system=SYSTEM)
    # 12 turns are over 0.7 of the 3000-token window (the threshold given, not a default)
    proc = _processor(config=PlanConfig(high_watermark=0.7, low_watermark=0.4,
                                        clear_tool_results=True, clear_keep_last=1,
                                        clear_min_tokens=1))
    out = await proc(None, history)
    assert proc.last_result.compacted
    changed = [m for m in out if isinstance(m, ModelRequest) and m not in history
               and any(isinstance(p, ToolReturnPart) for p in m.parts)]
    assert changed, "no tool return was cleared"
    for m in changed:
        orig = next(h for h in history if isinstance(h, ModelRequest) and
                    [getattr(p, "tool_call_id", None) for p in h.parts]
                    == [getattr(p, "tool_call_id", None) for p in m.parts])
        for new, old in zip(m.parts, orig.parts):
            assert type(new) is type(old)
            if isinstance(new, ToolReturnPart) and new.content != old.content:
                assert new.content.startswith("[tool result cleared by the context compactor")
                assert new.tool_name == old.tool_name
                assert "cleared" not in str(old.content)
    calls = {p.tool_call_id for m in out if isinstance(m, ModelResponse) for p in m.parts
             if isinstance(p, ToolCallPart)}
    returns = {p.tool_call_id for m in out if isinstance(m, ModelRequest) for p in m.parts
               if isinstance(p, ToolReturnPart)}
    assert calls == returns
