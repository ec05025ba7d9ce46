"""The real ``openai`` SDK, wrapped by CompactingOpenAI, runs 64-turn tool-using agent loops
against the loopback server (chat completions and Responses, JSON and streaming): the
server sees only valid requests, every compaction is in the ledger, and the store restores
exactly what the agent sent."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from compactor.adapters.openai_sdk import CompactingOpenAI

from openai_sdk_support import (AGENT_MODEL, API_KEY, CHAT_PATH, MAX_TOKENS, RESPONSES_PATH,
                                SYSTEM, TOOLS_CHAT, TOOLS_RESPONSES, TURNS, WINDOW, agent_requests,
                                chat_loop, check_run, make_harness, responses_loop)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_chat_completions_loop_compacts_with_valid_requests_ledger_and_archive(
        tmp_path: Path, stream: bool):
    """64 chat.completions.create calls (JSON or stream=True) through the wrapper: >= 3
    compactions, 0 violations, one ledger record per observed compaction, restore == the
    history the agent sent, and the SDK's own objects returned."""
    h = make_harness(tmp_path)
    raw = openai.AsyncOpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    client = CompactingOpenAI(raw, h.compactor, window=WINDOW, session_id="chat-loop")
    try:
        run = await chat_loop(client, stream=stream)
    finally:
        await raw.close()
        h.server.stop()
    check_run(h, run, "chat-loop", CHAT_PATH)
    kind = openai.AsyncStream if stream else openai.types.chat.ChatCompletion
    assert all(type(r) is kind for r in run.returned)
    calls = agent_requests(h)
    assert all(r.json["messages"][0] == {"role": "system", "content": SYSTEM}
               and r.json["tools"] == TOOLS_CHAT for r in calls)
    assert all(("stream_options" in r.json) is stream for r in calls)
    # the calibration saw every response's usage, streamed or not
    assert client.calibration(AGENT_MODEL).observations == TURNS


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_responses_loop_compacts_with_valid_requests_ledger_and_archive(
        tmp_path: Path, stream: bool):
    """64 responses.create calls (JSON or stream=True), the full list of input items each
    time: >= 3 compactions, 0 violations, one ledger record per observed compaction,
    restore == the items the agent sent, instructions and tools sent as given, and the
    calibration fed from every response (or response.completed event)."""
    h = make_harness(tmp_path)
    raw = openai.AsyncOpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    client = CompactingOpenAI(raw, h.compactor, window=WINDOW, session_id="responses-loop")
    try:
        run = await responses_loop(client, stream=stream)
    finally:
        await raw.close()
        h.server.stop()
    check_run(h, run, "responses-loop", RESPONSES_PATH)
    kind = openai.AsyncStream if stream else openai.types.responses.Response
    assert all(type(r) is kind for r in run.returned)
    calls = agent_requests(h, RESPONSES_PATH)
    assert all(r.json["instructions"] == SYSTEM and r.json["tools"] == TOOLS_RESPONSES
               and r.json["max_output_tokens"] == MAX_TOKENS for r in calls)
    assert not any("stream_options" in r.json for r in calls)
    assert client.calibration(AGENT_MODEL).observations == TURNS
