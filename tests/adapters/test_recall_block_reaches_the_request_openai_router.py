"""With question-time recall on, compacting_router hands the route the request the
compactor built (the recalled archive block just before the newest user turn), while the
caller's history never holds the block."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from compactor import FileSessionStore, MessageCompactor
from compactor.adapters.openai_http import compacting_router
from compactor.testing import CHAT_PATH, LoopbackServer

# the conversation script of the Anthropic test: notes (the first holds the fact), fillers
# that recall nothing, and the question about the fact
from test_recall_block_reaches_the_request_anthropic import (CLOSE, NOTES, OPEN, QUESTION,
                                                             SYSTEM, filler, respond)

pytestmark = pytest.mark.timeout(120)

MODEL = "gpt-4o"
WINDOW = 6000          # tokens, the compactor's (the router does not calibrate)
MAX_TOKENS = 256


async def test_recalled_fact_is_routed_before_the_question(tmp_path: Path):
    """recall_share=0.1 with a file store: once the note holding the fact is evicted, each
    question about it reaches the server with the note, by its archive ordinal, in a
    recalled user message just before the question; no other request and no later
    request's history carries a block; the server (which counts the requests' tokens
    against a limit) sees no violation."""
    # the server's tokenizer counts these turns about 1.2x ours: its limit leaves room
    server = LoopbackServer(respond, max_context_tokens=2 * WINDOW).start()
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1)
    http = httpx.AsyncClient(timeout=10.0)
    routed: list[list[dict[str, Any]]] = []

    async def route(messages: list[dict[str, Any]], **kw: Any) -> Any:
        routed.append(messages)
        got = await http.post(server.url + CHAT_PATH, json={"messages": messages, **kw})
        got.raise_for_status()
        return got.json()

    send = compacting_router(route, compactor, session_id="ops", window=WINDOW)
    history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    asked: list[int] = []     # indexes of the question requests
    try:
        turns = [*NOTES, *(filler(k) for k in range(40))]
        turns += [QUESTION if k % 3 == 2 else filler(100 + k) for k in range(24)]
        for t, text in enumerate(turns):
            history.append({"role": "user", "content": text})
            reply = await send(history, model=MODEL, max_tokens=MAX_TOKENS)
            history.append({"role": "assistant",
                            "content": reply["choices"][0]["message"]["content"]})
            if text == QUESTION:
                asked.append(t)
    finally:
        await http.aclose()
        server.stop()

    records = server.requests_to(CHAT_PATH, model=MODEL)
    assert server.violations == []
    assert len(records) == len(turns) and all(r.status == 200 for r in records)
    assert len(asked) == 8
    # what the route was handed is what the server recorded
    assert [r.json["messages"] for r in records] == routed
    archived_note = re.compile(r"\[\d+\] user: " + re.escape(NOTES[0]))
    for t, rec in enumerate(records):
        messages = rec.json["messages"]
        if t not in asked:
            assert not any(OPEN in str(m["content"]) for m in messages), t
            continue
        *before, block, question = messages
        assert question == {"role": "user", "content": QUESTION}
        assert block["role"] == "user" and block["content"].startswith(OPEN)
        assert block["content"].rstrip().endswith(CLOSE)
        assert archived_note.search(block["content"])
        # evicted: no other message of the request is the note (a summary may quote it)
        assert not any(m["content"] == NOTES[0] for m in before)
        assert not any(OPEN in str(m["content"]) for m in before)
    # the caller's history never held a block
    assert not any(OPEN in str(m["content"]) for m in history)
