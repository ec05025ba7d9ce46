"""With question-time recall on, a LangChain v1 agent with ``CompactionMiddleware`` sends its
model the recalled archive block, while the agent's checkpointed state never holds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain.agents")
pytest.importorskip("langchain_anthropic")
pytest.importorskip("langchain_openai")

from langchain.agents import create_agent  # noqa: E402
from langchain_anthropic import ChatAnthropic  # noqa: E402
from langchain_core.messages import BaseMessage, HumanMessage  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from compactor import FileSessionStore, MessageCompactor  # noqa: E402
from compactor.adapters.langchain import CompactionMiddleware  # noqa: E402
from compactor.testing import CHAT_PATH, MESSAGES_PATH, LoopbackServer  # noqa: E402

from recall_support import (CLOSE, MAX_TOKENS, NOTE, OPEN, QUESTION, WINDOW,  # noqa: E402
                            RecordingCalibrator, respond, text_of, turns)

pytestmark = pytest.mark.timeout(120)

MODEL = "claude-sonnet-4-6"


def state_text(messages: list[BaseMessage]) -> str:
    """Every message of an agent state as one text."""
    return "\n".join(text_of(m.content) for m in messages)


async def test_chat_anthropic_agent_sends_the_recalled_note_not_into_its_state(tmp_path: Path):
    """ChatAnthropic over HTTP (``ainvoke``, a checkpointed thread naming the session),
    recall_share=0.1 with a file store: the question about the evicted note goes out with
    the note verbatim in a recalled block, the last text block of the newest user message;
    no other request carries one; the thread's state never holds the block; 0 violations;
    and the estimate the calibration compares with the server's usage of that request
    counts the block's tokens."""
    server = LoopbackServer(respond, max_context_tokens=WINDOW).start()
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1)
    calibrator = RecordingCalibrator()
    mw = CompactionMiddleware(compactor, model=MODEL, window=WINDOW, max_tokens=MAX_TOKENS,
                              calibrator=calibrator)
    model = ChatAnthropic(model=MODEL, base_url=server.url, api_key="test-key",
                          max_tokens=MAX_TOKENS, max_retries=0)
    agent = create_agent(model, middleware=[mw], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "lc-recall"}}
    states: list[str] = []
    asked = None
    try:
        for text in turns():
            await agent.ainvoke({"messages": [HumanMessage(text)]}, config)
            states.append(state_text((await agent.aget_state(config)).values["messages"]))
            if text == QUESTION:
                asked = (server.requests_to(MESSAGES_PATH)[-1], mw.last_result,
                         len(calibrator.seen))
    finally:
        server.stop()

    assert server.violations == []
    calls = server.requests_to(MESSAGES_PATH)
    assert len(calls) == len(turns()) and all(r.status == 200 for r in calls)
    assert asked is not None
    rec, result, seen_before = asked
    carrying = [r for r in calls if OPEN in str(r.json)]
    assert carrying == [rec]
    last_user = [m for m in rec.json["messages"] if m["role"] == "user"][-1]
    assert isinstance(last_user["content"], list)
    block = last_user["content"][-1]["text"]
    assert block.startswith(OPEN) and block.rstrip().endswith(CLOSE)
    assert f"[0] user: {NOTE}" in block             # the archived first message, verbatim
    assert text_of(last_user["content"][:-1]) == QUESTION
    # evicted: apart from the block, no message of the request is the note
    assert not any(text_of(m["content"]) == NOTE for m in rec.json["messages"])
    assert compactor.session("lc-recall").compaction_count >= 1
    # the agent's own state, after every turn: never the block (the question is there)
    assert not any(OPEN in s for s in states)
    # the next turn calibrated on the question's request (the server's usage of it): the
    # estimate is the history's plus the block's tokens, counted here from what was sent
    estimate, provider = calibrator.seen[seen_before]
    assert provider == server.tokenizer.count(rec.json)
    assert estimate - result.tokens_after == compactor.counter.count(block) > 0


def test_chat_openai_agent_sends_the_recalled_note_through_the_sync_hooks(tmp_path: Path):
    """ChatOpenAI over HTTP with synchronous ``invoke`` and the OpenAI format, recall_share=0.1
    with a file store: the question goes out with a user message holding the recalled note
    just before it, that request only; the thread's state never holds it; 0 violations."""
    server = LoopbackServer(respond, max_context_tokens=WINDOW).start()
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1)
    mw = CompactionMiddleware(compactor, session_id="lc-openai-recall", fmt="openai",
                              model="gpt-4o", window=WINDOW, max_tokens=MAX_TOKENS)
    model = ChatOpenAI(model="gpt-4o", base_url=f"{server.url}/v1", api_key="sk-test",
                       max_tokens=MAX_TOKENS, max_retries=0)
    agent = create_agent(model, middleware=[mw], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t-1"}}
    states: list[str] = []
    asked: Any = None
    try:
        for text in turns():
            agent.invoke({"messages": [HumanMessage(text)]}, config)
            states.append(state_text(agent.get_state(config).values["messages"]))
            if text == QUESTION:
                asked = server.requests_to(CHAT_PATH)[-1]
    finally:
        server.stop()
        compactor.close()

    assert server.violations == []
    calls = server.requests_to(CHAT_PATH)
    assert len(calls) == len(turns()) and all(r.status == 200 for r in calls)
    assert [r for r in calls if OPEN in str(r.json)] == [asked]
    sent = asked.json["messages"]
    assert sent[-1] == {"role": "user", "content": QUESTION}
    block = text_of(sent[-2]["content"])
    assert sent[-2]["role"] == "user" and block.startswith(OPEN)
    assert f"[0] user: {NOTE}" in block
    assert not any(text_of(m["content"]) == NOTE for m in sent)
    assert not any(OPEN in s for s in states)


async def test_a_retried_model_call_carries_the_block_again(tmp_path: Path):
    """With LangChain's ``ModelRetryMiddleware`` outside the compaction middleware and the
    server failing the question's first request (HTTP 500), the retry is sent with the same
    recalled block as the failed attempt; the state still never holds it; 0 violations."""
    from langchain.agents.middleware import ModelRetryMiddleware

    from compactor.testing import Fault

    server = LoopbackServer(respond, max_context_tokens=WINDOW).start()
    server.enqueue(Fault.error(500), path=MESSAGES_PATH, match=lambda r: QUESTION in str(r.json))
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1)
    mw = CompactionMiddleware(compactor, model=MODEL, window=WINDOW, max_tokens=MAX_TOKENS)
    model = ChatAnthropic(model=MODEL, base_url=server.url, api_key="test-key",
                          max_tokens=MAX_TOKENS, max_retries=0)
    retry = ModelRetryMiddleware(max_retries=1, initial_delay=0.0, jitter=False,
                                 retry_on=lambda e: True, on_failure="error")
    agent = create_agent(model, middleware=[retry, mw], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "lc-retry"}}
    try:
        for text in turns()[:-1]:
            await agent.ainvoke({"messages": [HumanMessage(text)]}, config)
        state = (await agent.aget_state(config)).values["messages"]
    finally:
        server.stop()

    assert server.violations == []
    asked = [r for r in server.requests_to(MESSAGES_PATH) if QUESTION in str(r.json)]
    assert [r.status for r in asked] == [500, 200]
    lasts = [r.json["messages"][-1]["content"] for r in asked]
    blocks = [c[-1].get("text", "") if isinstance(c, list) else "" for c in lasts]
    assert blocks[0] == blocks[1] and blocks[0].startswith(OPEN)
    assert f"[0] user: {NOTE}" in blocks[0]
    assert OPEN not in state_text(state)
