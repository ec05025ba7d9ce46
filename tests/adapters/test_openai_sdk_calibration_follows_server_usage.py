"""CompactingOpenAI calibrates its token estimates from the usage the server reports, so
the compactor keeps requests inside a provider whose tokenizer counts far more than ours."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from compactor.adapters.openai_sdk import CompactingOpenAI
from compactor.testing import CHAT_PATH, RESPONSES_PATH, ReferenceTokenizer

from openai_sdk_support import (AGENT_MODEL, API_KEY, TURNS, WINDOW,
                                agent_requests, chat_loop, make_harness, responses_loop)

pytestmark = pytest.mark.timeout(120)

#: The server counts 2 characters a token: about twice what tiktoken counts.
DENSE = ReferenceTokenizer(chars_per_token=2.0)


async def _loop(tmp: Path, *, calibrate: bool, stream: bool = False, api: str = "chat"):
    h = make_harness(tmp, tokenizer=DENSE)
    raw = openai.AsyncOpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    client = CompactingOpenAI(raw, h.compactor, window=WINDOW, session_id="cal",
                              calibrate=calibrate)
    try:
        loop = chat_loop if api == "chat" else responses_loop
        return h, client, await loop(client, stream=stream)
    finally:
        await raw.close()
        h.server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_calibrated_estimates_approach_the_servers_usage(tmp_path: Path, stream: bool,
                                                               api: str):
    """After the loop, the calibrated prediction of every late request is within 3% of the
    input tokens the server reported (read from the SDK objects, or from the stream's
    usage chunk / response.completed event), while our raw estimate is off by more than
    20%; no request overflowed."""
    h, client, run = await _loop(tmp_path, calibrate=True, stream=stream, api=api)
    assert h.server.violations == []
    state = client.calibration(AGENT_MODEL)
    assert state.observations == TURNS
    reqs = agent_requests(h, CHAT_PATH if api == "chat" else RESPONSES_PATH)
    for r, req in list(zip(run.results, reqs))[-10:]:
        server = DENSE.count(req.json)          # what the server counted and reported
        assert abs(state.predict(r.tokens_after) - server) / server < 0.03
        assert abs(r.tokens_after - server) / server > 0.2
    if not stream:   # the server reported the count DENSE gives
        usage = [c.usage.prompt_tokens if api == "chat" else c.usage.input_tokens
                 for c in run.returned[-10:]]
        assert usage == [DENSE.count(q.json) for q in reqs[-10:]]


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_without_calibration_the_dense_server_rejects_a_request(tmp_path: Path, api: str):
    """The counterfactual: the same loop with calibrate=False sends a request the server
    rejects as too long (HTTP 400), so the calibration is what kept the loop valid."""
    with pytest.raises(openai.BadRequestError, match="prompt_too_long"):
        await _loop(tmp_path, calibrate=False, api=api)
