"""CompactionMiddleware's hooks called directly on a state: the update they return is
LangChain's state-replacement update, built from the agent's own message objects."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain.agents")

from langchain_core.messages import HumanMessage, RemoveMessage, ToolMessage  # noqa: E402
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages  # noqa: E402

from compactor import Format, MessageCompactor, validate  # noqa: E402
from compactor.adapters.langchain import (CompactionMiddleware, from_langchain,  # noqa: E402
                                          to_langchain)

from builders import anthropic_session  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def _middleware(**kw) -> CompactionMiddleware:
    return CompactionMiddleware(MessageCompactor(window=3000), session_id="s", **kw)


async def test_a_history_under_the_window_leaves_the_state_alone():
    """Under the threshold the hook returns None (no state update)."""
    lc = to_langchain(anthropic_session(2, words=5), Format.ANTHROPIC)
    assert await _middleware().abefore_model({"messages": lc}, None) is None


async def test_a_compaction_replaces_every_message_with_the_agents_own_objects():
    """Over the window the update is RemoveMessage(REMOVE_ALL_MESSAGES), the summary, then
    a tail of the state's own objects (identity, not copies) that starts on a pair boundary;
    applied with LangGraph's add_messages reducer it gives a valid, smaller history."""
    lc = to_langchain(anthropic_session(30), Format.ANTHROPIC)
    mw = _middleware()
    update = await mw.abefore_model({"messages": lc}, None)
    assert update is not None and mw.last_result.compacted
    head, summary, *kept = update["messages"]
    assert isinstance(head, RemoveMessage) and head.id == REMOVE_ALL_MESSAGES
    assert isinstance(summary, HumanMessage)
    assert summary.content.startswith("<conversation_summary>")
    tail = lc[len(lc) - len(kept):]
    assert all(a is b for a, b in zip(kept, tail)) and len(kept) < len(lc) // 2
    assert not isinstance(kept[0], ToolMessage)
    state = add_messages(lc, update["messages"])
    msgs, _ = from_langchain(state, Format.ANTHROPIC)
    assert validate(msgs, Format.ANTHROPIC) == [] and len(state) == len(kept) + 1
    # the next call (the new state plus a turn) continues the session without compacting
    more = [*state, HumanMessage("and then?")]
    assert await mw.abefore_model({"messages": more}, None) is None


def test_the_sync_hook_gives_the_async_hooks_update():
    """before_model (for agent.invoke) returns the same update as abefore_model."""
    import asyncio

    lc = to_langchain(anthropic_session(30), Format.ANTHROPIC)
    sync_mw, async_mw = _middleware(), _middleware()
    try:
        got = sync_mw.before_model({"messages": lc}, None)
    finally:
        sync_mw.compactor.close()
    want = asyncio.run(async_mw.abefore_model({"messages": lc}, None))
    assert got is not None and want is not None
    assert [m.content for m in got["messages"][1:]] == [m.content for m in want["messages"][1:]]
