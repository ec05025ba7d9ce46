"""CompactingOpenAI calibrates its token estimates from the usage the server reports, so
the compactor keeps requests inside a provider whose tokenizer counts far more than ours."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from compactor.adapters.openai_sdk import CompactingOpenAI
from compactor.testing import ReferenceTokenizer

from openai_sdk_support import (AGENT_MODEL, API_KEY, TURNS, WINDOW, agent_requests, chat_loop,
                                make_harness)

pytestmark = pytest.mark.timeout(120)

#: The server counts 2 characters a token: about twice what tiktoken counts.
DENSE = ReferenceTokenizer(chars_per_token=2.0)


async def _loop(tmp: Path, *, calibrate: bool, stream: bool = False, turns: int = TURNS):
    h = make_harness(tmp, tokenizer=DENSE)
    raw = openai.AsyncOpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    client = CompactingOpenAI(raw, h.compactor, window=WINDOW, session_id="cal",
                              calibrate=calibrate)
    try:
        return h, client, await chat_loop(client, turns, stream=stream)
    finally:
        await raw.close()
        h.server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_calibrated_estimates_approach_the_servers_usage(tmp_path: Path, stream: bool):
    """After the loop, the calibrated prediction of every late request is within 3% of the
    prompt_tokens the server reported (read from the SDK objects, or from the stream's
    last chunk), while our raw estimate is off by more than 20%; no request overflowed."""
    h, client, run = await _loop(tmp_path, calibrate=True, stream=stream)
    assert h.server.violations == []
    state = client.calibration(AGENT_MODEL)
    assert state.observations == TURNS
    reqs = agent_requests(h)
    for r, req in list(zip(run.results, reqs))[-10:]:
        server = DENSE.count(req.json)          # what the server counted and reported
        assert abs(state.predict(r.tokens_after) - server) / server < 0.03
        assert abs(r.tokens_after - server) / server > 0.2
    if not stream:
        assert [c.usage.prompt_tokens for c in run.returned[-10:]] == [
            DENSE.count(q.json) for q in reqs[-10:]]


async def test_without_calibration_the_dense_server_rejects_a_request(tmp_path: Path):
    """The counterfactual: the same loop with calibrate=False sends a request the server
    rejects as too long (HTTP 400), so the calibration is what kept the loop valid."""
    with pytest.raises(openai.BadRequestError, match="prompt_too_long"):
        await _loop(tmp_path, calibrate=False)
