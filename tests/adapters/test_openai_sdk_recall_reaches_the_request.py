"""With question-time recall on, CompactingOpenAI sends the request the compactor built
(the recalled archive block next to the newest user turn) while the session, the archive
and the calibration stay those of the agent's own history."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from compactor import MessageCompactor, PlanConfig
from compactor.adapters.openai_sdk import CompactingOpenAI
from compactor.testing import CHAT_PATH, RESPONSES_PATH

from openai_sdk_support import (AGENT_MODEL, API_KEY, WINDOW, agent_requests, chat_loop,
                                check_run, make_harness, responses_loop)

pytestmark = pytest.mark.timeout(120)

#: How a recalled block starts (compactor._recall.RECALL_OPEN, written out: the test's own).
RECALLED = "<recalled_context"


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_recalled_blocks_are_sent_and_calibration_counts_them(tmp_path: Path, api: str):
    """recall_share=0.1: requests carry recalled blocks, the server sees no violation,
    ledger, archive and restore are as without recall, and the calibration's prediction
    error stays under 5% on the last 20 responses (the block's tokens are part of the
    estimate compared with the server's count)."""
    h = make_harness(tmp_path)
    # the thresholds the bar was measured at: a compaction changes what a request is made
    # of (summary and block against tool output, which the server counts at another ratio
    # to ours), and compacting at 0.7 down to 0.4 the fit has seen that often enough by the
    # last 20 responses; without the block's tokens they stay near 20% off
    h.compactor = MessageCompactor(store=h.store, sink=h.ledger, recall_share=0.1,
                                   config=PlanConfig(high_watermark=0.7, low_watermark=0.4,
                                                     max_summary_tokens=2000,
                                                     summary_share=0.75))
    raw = openai.AsyncOpenAI(base_url=h.server.url + "/v1", api_key=API_KEY, max_retries=0)
    client = CompactingOpenAI(raw, h.compactor, window=WINDOW, session_id="recall")
    try:
        run = await (chat_loop if api == "chat" else responses_loop)(client)
    finally:
        await raw.close()
        h.server.stop()
    path = CHAT_PATH if api == "chat" else RESPONSES_PATH
    check_run(h, run, "recall", path)
    assert sum(RECALLED in str(r.json) for r in agent_requests(h, path)) >= 10
    assert max(client.calibration(AGENT_MODEL).errors[-20:]) < 0.05
