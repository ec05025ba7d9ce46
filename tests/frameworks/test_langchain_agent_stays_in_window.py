"""A real LangChain v1 agent (``create_agent``) with ``CompactionMiddleware``, its chat model
talking HTTP to the loopback server, runs 64 tool-using turns in a 6k window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain.agents")
pytest.importorskip("langchain_anthropic")
pytest.importorskip("langchain_openai")

from langchain.agents import create_agent  # noqa: E402
from langchain_anthropic import ChatAnthropic  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

from compactor.adapters.langchain import CompactionMiddleware, from_langchain  # noqa: E402

from frameworks_support import (CLEARED, FINAL, MAX_TOKENS, PROMPT, SYSTEM,  # noqa: E402
                                WINDOW, check_run, cleared_requests, make_harness,
                                ticket_report)

pytestmark = pytest.mark.timeout(120)

CONFIG = {"recursion_limit": 1000}


@tool
def lookup(ticket: str) -> str:
    """Look up a support ticket by its id (e.g. T-0001)."""
    return ticket_report(ticket)


def _collect(chunks: list[tuple[str, Any]]) -> tuple[list[BaseMessage], list[BaseMessage]]:
    """The messages the agent's model and tools nodes produced, in order (the middleware's
    own updates left out), and the final state's messages."""
    produced: list[BaseMessage] = []
    final: list[BaseMessage] = []
    for mode, chunk in chunks:
        if mode == "updates":
            for node, update in chunk.items():
                if node in ("model", "tools") and update:
                    produced.extend(update["messages"])
        else:
            final = chunk["messages"]
    return produced, final


@pytest.mark.parametrize("clear", [False, True], ids=["summaries", "clearing"])
async def test_chat_anthropic_agent_compacts_with_valid_requests_ledger_and_archive(
        tmp_path: Path, clear: bool):
    """ChatAnthropic over HTTP, 64 tool turns through async streaming: >= 3 compactions, 0
    violations at the server, every compaction in the JSONL ledger, and the store restores
    exactly the history the agent sent (converted by from_langchain); with tool-result
    clearing on, the cleared results go out as copies of the agent's ToolMessages."""
    h = make_harness(tmp_path, clear=clear)
    try:
        model = ChatAnthropic(model="claude-sonnet-4-6", base_url=h.server.url, api_key="test-key",
                              max_tokens=MAX_TOKENS, max_retries=0)
        mw = CompactionMiddleware(h.compactor, session_id="lc-anthropic", window=WINDOW,
                                  max_tokens=MAX_TOKENS, system=SYSTEM, tools=[lookup])
        agent = create_agent(model, [lookup], system_prompt=SYSTEM, middleware=[mw])
        first = HumanMessage(PROMPT)
        chunks = [c async for c in agent.astream({"messages": [first]}, CONFIG,
                                                 stream_mode=["updates", "values"])]
    finally:
        h.server.stop()
    produced, final = _collect(chunks)
    assert isinstance(produced[-1], AIMessage) and produced[-1].content == FINAL
    # the last AIMessage answered the last request: it was never sent
    sent, system = from_langchain([first, *produced[:-1]], "anthropic")
    assert system is None
    records = check_run(h, "lc-anthropic", sent)
    assert {r["format"] for r in records} == {"anthropic"}
    # every request carried the agent's system prompt, and the summary once compacted
    calls = h.agent_requests()
    assert all(r.json["system"] == SYSTEM for r in calls)
    assert calls[-1].json["messages"][0]["content"].startswith("<conversation_summary>")
    # kept messages are the agent's own objects: each AIMessage still has its usage
    ais = [m for m in final if isinstance(m, AIMessage)]
    assert len(ais) < 64 and all(m.usage_metadata for m in ais)
    # each response's usage_metadata calibrated the window
    assert mw.calibrator.state("claude-sonnet-4-6").observations >= 60
    cleared = [m for m in final if isinstance(m, ToolMessage) and m.text.startswith(CLEARED)]
    assert (cleared_requests(h) > 0 and len(cleared) > 0) is clear
    assert all(m.name == "lookup" and m.tool_call_id.startswith("toolu_") for m in cleared)


def test_chat_openai_agent_compacts_through_the_sync_hook(tmp_path: Path):
    """ChatOpenAI over HTTP with a synchronous ``agent.stream`` (the ``before_model`` hook)
    and the OpenAI format: the same guarantees as with ChatAnthropic."""
    h = make_harness(tmp_path)
    try:
        model = ChatOpenAI(model="gpt-4o", base_url=f"{h.server.url}/v1", api_key="sk-test",
                           max_tokens=MAX_TOKENS, max_retries=0)
        mw = CompactionMiddleware(h.compactor, session_id="lc-openai", fmt="openai",
                                  window=WINDOW, max_tokens=MAX_TOKENS, system=SYSTEM,
                                  tools=[lookup])
        agent = create_agent(model, [lookup], system_prompt=SYSTEM, middleware=[mw])
        first = HumanMessage(PROMPT)
        chunks = list(agent.stream({"messages": [first]}, CONFIG,
                                   stream_mode=["updates", "values"]))
    finally:
        h.server.stop()
        h.compactor.close()
    produced, final = _collect(chunks)
    assert produced[-1].content == FINAL
    sent, system = from_langchain([first, *produced[:-1]], "openai")
    assert system is None
    records = check_run(h, "lc-openai", sent)
    assert {r["format"] for r in records} == {"openai"}
    last = h.agent_requests()[-1].json["messages"]
    assert last[0] == {"role": "system", "content": SYSTEM}
    assert last[1]["role"] == "system" and last[1]["content"].startswith("<conversation_summary>")
    assert all(m.usage_metadata for m in final if isinstance(m, AIMessage))


async def test_checkpointed_thread_is_the_session_across_invocations(tmp_path: Path):
    """Without a session_id the run's thread_id names the session: a second invocation on
    the same checkpointed thread continues the compacted state, and the archive holds
    both invocations in order."""
    from langgraph.checkpoint.memory import InMemorySaver

    h = make_harness(tmp_path)
    config = {**CONFIG, "configurable": {"thread_id": "support-7"}}
    try:
        model = ChatAnthropic(model="claude-sonnet-4-6", base_url=h.server.url, api_key="test-key",
                              max_tokens=MAX_TOKENS, max_retries=0)
        mw = CompactionMiddleware(h.compactor, window=WINDOW, max_tokens=MAX_TOKENS,
                                  system=SYSTEM, tools=[lookup])
        agent = create_agent(model, [lookup], system_prompt=SYSTEM, middleware=[mw],
                             checkpointer=InMemorySaver())
        first, again = HumanMessage(PROMPT), HumanMessage("Anything left?")
        chunks = [c async for c in agent.astream({"messages": [first]}, config,
                                                 stream_mode=["updates", "values"])]
        chunks += [c async for c in agent.astream({"messages": [again]}, config,
                                                  stream_mode=["updates", "values"])]
    finally:
        h.server.stop()
    produced, final = _collect(chunks)
    # the second invocation's only model call answered at once (the script is done)
    assert [m.content for m in produced[-2:]] == [FINAL, FINAL]
    state = h.compactor.session("support-7")
    assert state.compaction_count >= 3 and h.compactor.session("default").compaction_count == 0
    sent, _ = from_langchain([first, *produced[:-1], again], "anthropic")
    assert h.store.restore("support-7") == sent
    assert final[-1].content == FINAL and final[-2].content == "Anything left?"
    assert h.server.violations == []
