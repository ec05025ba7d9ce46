"""A streamed chat call whose client did not ask for usage (the openai SDK's default)
still counts in the proxy's session tokens: the proxy asks the upstream for the usage
chunk (stream_options.include_usage) and does not pass that chunk on; a client that asked
for it gets it as the upstream sent it."""

from __future__ import annotations

import openai
import pytest

from compactor.testing import CHAT_PATH, LoopbackServer

from proxy_helpers import served, settled_totals

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "Summarize the release notes of version 2.3 in one line."}]


def _plain_usage(up: LoopbackServer) -> tuple[int, int]:
    """The usage the upstream reports for MESSAGES on a non-streamed call (straight to it)."""
    with openai.OpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0) as c:
        u = c.chat.completions.create(model="gpt-4o", messages=MESSAGES).usage
    return u.prompt_tokens, u.completion_tokens


@pytest.mark.parametrize("asked", [False, True], ids=["client-did-not-ask", "client-asked"])
def test_streamed_usage_is_counted_and_shown_only_when_asked(asked: bool) -> None:
    """The proxy's totals hold the upstream's usage either way; the client sees a usage
    chunk (choices == []) exactly when it asked; the upstream was asked for usage."""
    with LoopbackServer() as up:
        want_in, want_out = _plain_usage(up)
        with served(up.url) as proxy, \
                openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as c:
            kw = {"stream_options": {"include_usage": True}} if asked else {}
            chunks = list(c.chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                    stream=True, **kw))
            totals = settled_totals(proxy.proxy)
        sent = up.requests_to(CHAT_PATH)[-1].json
        assert up.violations == []
    assert sent["stream_options"] == {"include_usage": True}
    usage_chunks = [ch for ch in chunks if not ch.choices]
    assert len(usage_chunks) == (1 if asked else 0)
    if asked:
        assert usage_chunks[0].usage.prompt_tokens == want_in
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert chunks[-1 if not asked else -2].choices[0].finish_reason == "stop"
    assert (totals["input_tokens"], totals["output_tokens"]) == (want_in, want_out)
