"""With question-time recall on, the proxy forwards the recalled block and its status reports
the forwarded request's tokens (``tokens_sent``) with the block counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy_helpers import served

from compactor import FileSessionStore, MessageCompactor
from compactor.testing import MESSAGES_PATH, LoopbackServer, RecordedRequest, Reply

pytestmark = pytest.mark.timeout(120)

KEY = "sk-ant-api03-recall-Qw3Er5Ty7Ui9Op1"
MODEL = "claude-sonnet-4-6"
SYSTEM = "You are the operations assistant."
OPEN = "<recalled_context"    # how a recalled block starts (compactor._recall's marker)
NOTE = ("For the record: the staging database lives in region eu-north-5, on the cluster "
        "pg-stage-3, and its backups run nightly at 02:00 UTC to the bucket acme-stage-bak.")
QUESTION = "Which region does the staging database live in? Quote the note."


def respond(req: RecordedRequest) -> Reply:
    """The agent model: a short acknowledgement naming the request's sequence number."""
    return Reply(text=f"Ack {req.seq}.")


def test_tokens_sent_counts_the_recalled_block(tmp_path: Path) -> None:
    """An early note evicted from a 6k window, then a question about it through the proxy:
    the forwarded request carries the note in a recalled block, and the session's
    ``tokens_sent`` is the compactor's own count of that forwarded request (not of the
    history alone: the block is about 100 tokens), 0 violations upstream."""
    compactor = MessageCompactor(store=FileSessionStore(tmp_path / "store"), recall_share=0.1,
                                 window=6000)
    history: list[dict[str, Any]] = []
    turns = [NOTE, *(" ".join(f"q{k}z{j}" for j in range(55)) + "." for k in range(40)),
             QUESTION]
    with LoopbackServer(respond) as up, served(up.url, compactor=compactor) as proxy, \
            httpx.Client(trust_env=False, timeout=30.0) as client:
        for text in turns:
            history.append({"role": "user", "content": text})
            r = client.post(proxy.url + MESSAGES_PATH,
                            json={"model": MODEL, "max_tokens": 256, "system": SYSTEM,
                                  "messages": history},
                            headers={"x-api-key": KEY, "x-compactor-session": "recall-proxy",
                                     "anthropic-version": "2023-06-01"})
            assert r.status_code == 200, r.text
            history.append({"role": "assistant", "content": r.json()["content"][0]["text"]})
        status = proxy.proxy.status()
        assert up.violations == []
        forwarded = up.requests_to(MESSAGES_PATH)[-1].json
    assert OPEN in str(forwarded["messages"][-1]["content"]) and NOTE in str(forwarded)
    assert not any(m["content"] == NOTE for m in forwarded["messages"])   # evicted
    (session,) = status["sessions"]
    assert session["compactions"] >= 1
    sent = compactor.count_request(forwarded["messages"], system=forwarded["system"])
    without = [*forwarded["messages"][:-1], {**forwarded["messages"][-1],
               "content": forwarded["messages"][-1]["content"][:-1]}]
    history_only = compactor.count_request(without, system=forwarded["system"])
    assert sent - history_only > 50
    assert session["tokens_sent"] == sent, (session["tokens_sent"], sent, history_only)
