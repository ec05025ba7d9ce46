"""With question-time recall on, an OpenAI Agents SDK run on a ``CompactingSession`` sends its
model the recalled archive block, the underlying session never stores it, and the estimate
the session calibrates with counts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import Agent, ModelSettings, RunConfig, Runner, SQLiteSession  # noqa: E402

from compactor import FileSessionStore, MessageCompactor  # noqa: E402
from compactor.adapters.openai_agents import CompactingSession  # noqa: E402
from compactor.testing import RESPONSES_PATH, LoopbackServer  # noqa: E402

from openai_agents_support import responses_model  # noqa: E402
from recall_support import (CLOSE, MAX_TOKENS, NOTE, OPEN, QUESTION, WINDOW,  # noqa: E402
                            RecordingCalibrator, respond, text_of, turns)

pytestmark = pytest.mark.timeout(120)


def item_text(item: dict[str, Any]) -> str:
    """A Responses message item's text (its string content, or its parts' text)."""
    return text_of(item.get("content"))


def _setup(tmp_path: Path, sid: str) -> tuple[Any, ...]:
    """The loopback server (started), a compactor with a file store and recall_share=0.1,
    a recording calibrator, the agent, its SQLite session ``sid`` and the CompactingSession
    around it."""
    server = LoopbackServer(respond, max_context_tokens=WINDOW).start()
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1)
    calibrator = RecordingCalibrator()
    agent = Agent(name="ops", instructions="You answer the operations team.",
                  model=responses_model(server.url),
                  model_settings=ModelSettings(max_tokens=MAX_TOKENS))
    raw = SQLiteSession(sid, str(tmp_path / "chats.db"))
    session = CompactingSession(raw, compactor, agent=agent, window=WINDOW,
                                max_tokens=MAX_TOKENS, calibrator=calibrator)
    return server, compactor, calibrator, agent, raw, session


async def test_run_sends_the_recalled_note_and_calibrates_on_it(tmp_path: Path):
    """Runs of one turn each on a CompactingSession (its filter and hooks), recall_share=0.1
    with a file store: the question about the evicted note goes out with the note verbatim
    in a recalled user message just before it, that request only; the underlying session
    and the compactor's archive never hold the block; 0 violations; and the estimate
    compared with the server's usage of that request counts the block's tokens."""
    server, compactor, calibrator, agent, raw, session = _setup(tmp_path, "oa-recall")
    config = RunConfig(call_model_input_filter=session.call_model_input_filter)
    asked: Any = None
    try:
        for text in turns():
            await Runner.run(agent, text, session=session, hooks=session.hooks,
                             run_config=config)
            if text == QUESTION:
                asked = (server.requests_to(RESPONSES_PATH)[-1], session.last_result,
                         calibrator.seen[-1])
    finally:
        server.stop()

    assert server.violations == []
    calls = server.requests_to(RESPONSES_PATH)
    assert len(calls) == len(turns()) and all(r.status == 200 for r in calls)
    rec, result, (estimate, provider) = asked
    assert [r for r in calls if OPEN in str(r.json)] == [rec]
    sent = rec.json["input"]
    assert item_text(sent[-1]) == QUESTION
    block = item_text(sent[-2])
    assert sent[-2]["role"] == "user" and block.startswith(OPEN)
    assert block.rstrip().endswith(CLOSE) and f"[0] user: {NOTE}" in block
    assert not any(item_text(i) == NOTE for i in sent if isinstance(i, dict))
    assert compactor.session("oa-recall").compaction_count >= 1
    # what the SDK stored, and what the compactor archived: never the block
    assert not any(OPEN in str(i) for i in await raw.get_items())
    assert not any(OPEN in str(m) for m in compactor.store.restore("oa-recall"))
    # the question's usage (the server's count) against the history's plus the block's tokens
    assert provider == server.tokenizer.count(rec.json)
    assert estimate - result.tokens_after == compactor.counter.count(block) > 0


async def test_view_with_no_place_for_the_block_is_estimated_without_it(tmp_path: Path):
    """Runs without the filter: ``get_items`` after the question has no user turn to put a
    recalled note next to (the history ends in the answer), so the result carries no block,
    no request carries one, and the estimate compared with the server's usage of the next
    request is the history's alone."""
    server, compactor, calibrator, agent, raw, session = _setup(tmp_path, "oa-view")
    try:
        for text in turns():
            await Runner.run(agent, text, session=session, hooks=session.hooks)
    finally:
        server.stop()

    assert server.violations == []
    calls = server.requests_to(RESPONSES_PATH)
    assert len(calls) == len(turns()) and not any(OPEN in str(r.json) for r in calls)
    # the last run read the view after the question: recall had no user turn to place the
    # note next to, so the result carries no block and nothing to send but the history
    result = session.last_result
    assert result.recall is None and result.request_messages is None
    assert result.to_send() is result.messages
    estimate, provider = calibrator.seen[-1]
    assert provider == server.tokenizer.count(calls[-1].json)
    assert estimate == result.tokens_after
