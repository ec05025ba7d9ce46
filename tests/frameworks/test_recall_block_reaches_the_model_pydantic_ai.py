"""With question-time recall on, a Pydantic AI agent with ``CompactingCapability`` sends its
model the recalled archive block, while the run's message history never holds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")
pytest.importorskip("pydantic_ai.capabilities")
pytest.importorskip("anthropic")
pytest.importorskip("openai")

from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.models.anthropic import AnthropicModel  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.anthropic import AnthropicProvider  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

from compactor import FileSessionStore, MessageCompactor  # noqa: E402
from compactor.adapters.pydantic_ai import (CompactingCapability,  # noqa: E402
                                            CompactingHistoryProcessor, from_pydantic_ai)
from compactor.testing import CHAT_PATH, MESSAGES_PATH, LoopbackServer  # noqa: E402

from recall_support import (CLOSE, MAX_TOKENS, NOTE, OPEN, QUESTION, WINDOW,  # noqa: E402
                            RecordingCalibrator, respond, text_of, turns)

pytestmark = pytest.mark.timeout(120)


def _model(kind: str, url: str) -> tuple[Any, str, str]:
    """The agent's model talking to the loopback server at ``url``, its name, and the path
    its requests go to."""
    if kind == "anthropic":
        provider = AnthropicProvider(base_url=url, api_key="test-key")
        return AnthropicModel("claude-sonnet-4-6", provider=provider), "claude-sonnet-4-6", \
            MESSAGES_PATH
    provider = OpenAIProvider(base_url=f"{url}/v1", api_key="sk-test")
    return OpenAIChatModel("gpt-4o", provider=provider), "gpt-4o", CHAT_PATH


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_agent_sends_the_recalled_note_not_into_its_history(tmp_path: Path, kind: str):
    """AnthropicModel / OpenAIChatModel over HTTP, recall_share=0.1 with a file store: the
    question about the evicted note goes out with the note verbatim in a recalled block,
    the last text of the newest user turn, that request only; the run's message history
    (``all_messages()``, carried to the next run) never holds the block; 0 violations; and
    the estimate the calibration compares with the server's usage of that request counts
    the block's tokens."""
    server = LoopbackServer(respond, max_context_tokens=WINDOW).start()
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1)
    calibrator = RecordingCalibrator()
    model, name, path = _model(kind, server.url)
    proc = CompactingHistoryProcessor(compactor, session_id="pa-recall", window=WINDOW,
                                      max_tokens=MAX_TOKENS, calibrator=calibrator)
    agent = Agent(model, capabilities=[CompactingCapability(proc)],
                  model_settings={"max_tokens": MAX_TOKENS})
    history: list[Any] = []
    histories: list[str] = []
    asked: Any = None
    try:
        for text in turns():
            result = await agent.run(text, message_history=history)
            history = result.all_messages()
            histories.append(str(from_pydantic_ai(history)[0]))
            if text == QUESTION:
                asked = (server.requests_to(path)[-1], proc.last_result, len(calibrator.seen))
    finally:
        server.stop()

    assert server.violations == []
    calls = server.requests_to(path)
    assert len(calls) == len(turns()) and all(r.status == 200 for r in calls)
    rec, result, seen_before = asked
    assert [r for r in calls if OPEN in str(r.json)] == [rec]
    sent = rec.json["messages"]
    if kind == "anthropic":
        blocks = sent[-1]["content"]
        assert sent[-1]["role"] == "user" and text_of(blocks[:-1]) == QUESTION
        block = blocks[-1]["text"]
    else:   # the newest user turn's parts, each a user message: the question, the block
        assert [m["role"] for m in sent[-2:]] == ["user", "user"]
        assert text_of(sent[-2]["content"]) == QUESTION
        block = text_of(sent[-1]["content"])
    assert block.startswith(OPEN) and block.rstrip().endswith(CLOSE)
    assert f"[0] user: {NOTE}" in block              # the archived first message, verbatim
    assert not any(text_of(m["content"]) == NOTE for m in sent)
    assert compactor.session("pa-recall").compaction_count >= 1
    # the run's history, after every run: never the block (the question is there)
    assert not any(OPEN in h for h in histories)
    assert QUESTION in histories[-1]
    # the next run calibrated on the question's request (the server's usage of it): the
    # estimate is the history's plus the block's tokens, counted here from what was sent
    estimate, provider = calibrator.seen[seen_before]
    assert provider == server.tokenizer.count(rec.json)
    assert estimate - result.tokens_after == compactor.counter.count(block) > 0
