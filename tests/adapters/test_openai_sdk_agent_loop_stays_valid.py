"""The real ``openai`` SDK, wrapped by CompactingOpenAI, runs 64-turn tool-using agent loops
against the loopback server (chat completions and Responses, JSON and streaming): the
server sees only valid requests, every compaction is in the ledger, and the store restores
exactly what the agent sent."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from compactor.adapters.openai_sdk import CompactingOpenAI
from compactor.testing import CHAT_PATH, RESPONSES_PATH

from openai_sdk_support import (AGENT_MODEL, API_KEY, MAX_TOKENS, SYSTEM, TOOLS_CHAT,
                                TOOLS_RESPONSES, TURNS, WINDOW, agent_requests, chat_loop,
                                check_run, make_harness, reasoning_loop, responses_loop)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_agent_loop_compacts_with_valid_requests_ledger_and_archive(
        tmp_path: Path, api: str, stream: bool):
    """64 chat.completions.create or responses.create calls (JSON or stream=True), the
    full growing history each time: >= 3 compactions, 0 violations, one ledger record per
    observed compaction, restore == the history the agent sent, the SDK's own objects
    returned, every other argument sent as given, the calibration fed by every response."""
    h = make_harness(tmp_path)
    raw = openai.AsyncOpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    session = f"{api}-loop"
    client = CompactingOpenAI(raw, h.compactor, window=WINDOW, session_id=session)
    try:
        run = await (chat_loop if api == "chat" else responses_loop)(client, stream=stream)
    finally:
        await raw.close()
        h.server.stop()
    path = CHAT_PATH if api == "chat" else RESPONSES_PATH
    check_run(h, run, session, path)
    kind = (openai.AsyncStream if stream else openai.types.chat.ChatCompletion if api == "chat"
            else openai.types.responses.Response)
    assert all(type(r) is kind for r in run.returned)
    calls = agent_requests(h, path)
    if api == "chat":
        assert all(r.json["messages"][0] == {"role": "system", "content": SYSTEM}
                   and r.json["tools"] == TOOLS_CHAT for r in calls)
    else:
        assert all(r.json["instructions"] == SYSTEM and r.json["tools"] == TOOLS_RESPONSES
                   and r.json["max_output_tokens"] == MAX_TOKENS for r in calls)
    # include_usage is asked for on streamed chat calls only
    assert all(("stream_options" in r.json) is (stream and api == "chat") for r in calls)
    assert client.calibration(AGENT_MODEL).observations == TURNS


async def test_reasoning_model_loop_keeps_encrypted_reasoning_with_its_calls(tmp_path: Path):
    """A stateless reasoning-model agent that extends its input with response.output (the
    SDK's reasoning, message and function_call objects): 64 turns, >= 3 compactions, 0
    violations (no reasoning item sent without the item it precedes), restore == the
    items as the SDK serializes them, encrypted content sent unchanged."""
    h = make_harness(tmp_path, reasoning=True)
    raw = openai.AsyncOpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    client = CompactingOpenAI(raw, h.compactor, window=WINDOW, session_id="reasoning")
    try:
        run = await reasoning_loop(client)
    finally:
        await raw.close()
        h.server.stop()
    check_run(h, run, "reasoning", RESPONSES_PATH)
    sent = [i for r in agent_requests(h, RESPONSES_PATH) for i in r.json["input"]
            if i.get("type") == "reasoning"]
    assert sent and all(i["encrypted_content"].startswith("gAAAA") for i in sent)
    assert sum(m.get("type") == "reasoning" for m in run.sent) >= TURNS - 1
