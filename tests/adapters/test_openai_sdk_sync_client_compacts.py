"""CompactingSyncOpenAI (around the real ``openai.OpenAI``) runs the 64-turn tool-using
agent loop from a plain function and from inside a running event loop, with the same
guarantees as the async wrapper."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from compactor.adapters.openai_sdk import CompactingSyncOpenAI
from compactor.testing import CHAT_PATH, RESPONSES_PATH

from openai_sdk_support import (API_KEY, WINDOW, Run, chat_loop_sync,
                                check_run, make_harness, responses_loop_sync)

pytestmark = pytest.mark.timeout(120)


def _checked_run(tmp: Path, session_id: str, *, stream: bool,
                 responses: bool = False) -> tuple[Run, CompactingSyncOpenAI]:
    """The sync agent loop (chat, or Responses) on a fresh harness, checked by
    ``check_run``."""
    h = make_harness(tmp)
    raw = openai.OpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    client = CompactingSyncOpenAI(raw, h.compactor, window=WINDOW, session_id=session_id)
    try:
        run = (responses_loop_sync if responses else chat_loop_sync)(client, stream=stream)
    finally:
        raw.close()
        h.compactor.close()
        h.server.stop()
    check_run(h, run, session_id, RESPONSES_PATH if responses else CHAT_PATH)
    return run, client


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_sync_client_in_a_plain_function_compacts_with_valid_requests(tmp_path: Path, stream: bool):
    """The sync wrapper called from a plain (loop-less) function: >= 3 compactions, 0
    violations, ledger == observed compactions, restore == sent, the SDK's own objects."""
    run, client = _checked_run(tmp_path, "sync-plain", stream=stream)
    kind = openai.Stream if stream else openai.types.chat.ChatCompletion
    assert all(type(r) is kind for r in run.returned)
    assert client.calibration("gpt-4o").observations == len(run.returned)


async def test_sync_client_inside_a_running_event_loop_compacts_with_valid_requests(tmp_path: Path):
    """The sync wrapper called from a coroutine (a loop is running in this thread) still
    compacts, through the compactor's own loop, with the same guarantees."""
    asyncio.get_running_loop()   # the premise: we are inside a running loop
    run, _ = _checked_run(tmp_path, "sync-in-loop", stream=False)
    assert sum(run.compacted) >= 3


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_sync_client_responses_loop_compacts_with_valid_requests(tmp_path: Path, stream: bool):
    """The sync wrapper's responses.create in a plain function: the same guarantees, the
    SDK's Response or Stream returned, calibrated from every response."""
    run, client = _checked_run(tmp_path, "sync-responses", stream=stream, responses=True)
    kind = openai.Stream if stream else openai.types.responses.Response
    assert all(type(r) is kind for r in run.returned)
    assert client.calibration("gpt-4o").observations == len(run.returned)
