"""With question-time recall on, CompactingAnthropic sends the request the compactor built
(the recalled archive block in the newest user turn), and its calibration counts the
block's tokens in the estimate it compares with the server's usage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import pytest

from compactor import FileSessionStore, MessageCompactor
from compactor.adapters.anthropic_sdk import CompactingAnthropic
from compactor.testing import MESSAGES_PATH, LoopbackServer, RecordedRequest
from frameworks.recall_support import RecordingCalibrator, respond

pytestmark = pytest.mark.timeout(120)

MODEL = "claude-sonnet-4-6"
API_KEY = "sk-ant-test-0123456789abcdef"
WINDOW = 6000          # provider tokens
MAX_TOKENS = 256
SYSTEM = "You are the operations assistant of the acme/payments team."
#: How a recalled block starts and ends (compactor._recall's markers, written out here).
OPEN, CLOSE = "<recalled_context", "</recalled_context>"
FACT = "eu-north-5"
#: The early notes; the first holds the fact the question asks about.
NOTES = [
    f"For the record: the staging database lives in region {FACT}, on the cluster "
    "pg-stage-3, and its backups run nightly at 02:00 UTC to the bucket acme-stage-bak.",
    "Staging database note: connections go through the pooler on port 6432; the read "
    "replica lags by up to a minute during the nightly backup window.",
    "Staging database note: schema migrations are applied by the deploy job, never by "
    "hand; a failed migration is rolled back by the job itself.",
    "Staging database note: the credentials rotate every 30 days; the old ones keep "
    "working for 48 hours after a rotation.",
]
QUESTION = "Which region does the staging database live in? Quote the note."


#: Parts of the filler words: short English words, so a filler tokenizes about as the
#: notes do (the calibration is fitted on fillers and checked on notes).
PARTS = ("sun rock tree bird lake hill road farm corn wind rain snow leaf seed root bark "
         "moss fern pond reed sand clay iron gold salt milk wool silk rope nail bolt gear "
         "mill barn gate wall roof door lamp coal fire ash oak elm pine rose lily mint "
         "sage dill kale bean pea oat rye hay hen cow ox elk owl bee ant").split()


def filler(k: int) -> str:
    """Turn ``k``'s log: 60 compound words found in no other turn, so it recalls nothing."""
    words = []
    for j in range(60):
        n = k * 60 + j
        a, b = PARTS[n % len(PARTS)], PARTS[n // len(PARTS) % len(PARTS)]
        words.append(a + b + (str(n // len(PARTS) ** 2) if n >= len(PARTS) ** 2 else ""))
    return " ".join(words) + "."


def text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(
        b.get("text", "") for b in content if isinstance(b, dict))


def recalled_block(body: dict[str, Any]) -> str | None:
    """The text of the recalled block that ends the request's newest user message, or None."""
    last = [m for m in body["messages"] if m["role"] == "user"][-1]
    blocks = last["content"] if isinstance(last["content"], list) else []
    text = str(blocks[-1].get("text", "")) if blocks else ""
    return text if text.startswith(OPEN) else None


def without_block(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the recalled block taken out of its newest user message."""
    messages = [dict(m) for m in body["messages"]]
    for m in messages:
        if isinstance(m["content"], list):
            m["content"] = [b for b in m["content"] if not str(b.get("text", "")).startswith(OPEN)]
    return {**body, "messages": messages}


async def test_recalled_fact_is_sent_and_calibration_counts_the_block(tmp_path: Path):
    """recall_share=0.1 with a file store: once the note holding the fact is evicted, each
    question about it is sent with the note in a recalled block (the last block of the
    newest user turn), no other request carries one, the server sees no violation, and the
    estimate the calibration compares with the server's usage counts the block (converted
    at the request's ratio, within 50% of the server's count of the block; without it, 0)."""
    server = LoopbackServer(respond, max_context_tokens=WINDOW).start()
    raw = anthropic.AsyncAnthropic(base_url=server.url, api_key=API_KEY, timeout=10.0,
                                   max_retries=0)
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1)
    calibrator = RecordingCalibrator()
    client = CompactingAnthropic(raw, compactor, window=WINDOW, session_id="ops",
                                 calibrator=calibrator)
    history: list[dict[str, Any]] = []
    #: per question: the request, the result, the last (estimate, provider count) observed
    asked: list[tuple[RecordedRequest, Any, tuple[int, int]]] = []
    others: list[RecordedRequest] = []
    try:
        turns = [*NOTES, *(filler(k) for k in range(40))]
        turns += [QUESTION if k % 3 == 2 else filler(100 + k) for k in range(24)]
        for t, text in enumerate(turns):
            history.append({"role": "user", "content": text})
            kwargs = dict(model=MODEL, max_tokens=MAX_TOKENS, system=SYSTEM, messages=history)
            if t % 2:
                async with client.messages.stream(**kwargs) as stream:
                    resp = await stream.get_final_message()
            else:
                resp = await client.messages.create(**kwargs)
            history.append({"role": "assistant", "content": resp.content[0].text})
            rec = server.requests_to(MESSAGES_PATH, model=MODEL)[-1]
            if text == QUESTION:
                asked.append((rec, client.last_result, calibrator.seen[-1]))
            elif t >= len(NOTES):
                others.append(rec)
    finally:
        await raw.close()
        server.stop()

    assert server.violations == []
    assert len(asked) == 8 and all(rec.status == 200 for rec, _, _ in asked)
    assert not any(OPEN in str(rec.json) for rec in others)
    for rec, result, (estimate, provider) in asked:
        block = recalled_block(rec.json)
        assert block is not None and block.rstrip().endswith(CLOSE)
        assert f"[0] user: {NOTES[0]}" in block      # the archived message 0, verbatim
        # evicted: no message of the request is the note (a summary may quote it)
        assert not any(text_of(m) == NOTES[0] for m in without_block(rec.json)["messages"])
        # the server's usage of this request, and its share for the block, counted here
        total = server.tokenizer.count(rec.json)
        assert provider == total
        block_tokens = total - server.tokenizer.count(without_block(rec.json))
        assert block_tokens > 0.05 * total
        # what the estimate holds beyond the history, in the server's tokens at this
        # request's own ratio: the block (without it, 0)
        beyond = (estimate - result.tokens_after) * provider / estimate
        assert 0.5 * block_tokens < beyond < 1.5 * block_tokens, (beyond, block_tokens)
