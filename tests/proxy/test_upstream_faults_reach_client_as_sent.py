"""Faults of the upstream reach the client through the proxy as the upstream sent them:
the same request is made directly to the loopback server and through the proxy, each
with the same scripted fault, and what the client gets is compared (status, retry-after,
body bytes; for a stream cut short, the bytes before the cut and the kind of error).
The loopback server's generated ids and timestamps differ between two answers and are
masked before comparing. No fault is retried by the proxy: the upstream sees one request
per client request."""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy_helpers import served
from compactor.testing import Fault, LoopbackServer

KEY = "sk-ant-api03-faulttest-Zx8Kq2Lm5Np7Rt1Vw4"
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Find flights to Lisbon"}]}
CHAT = {"model": "gpt-4o", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Find flights to Lisbon"}]}
_IDS = re.compile(rb"(msg_loop_|toolu_loop_|chatcmpl-loop|req_loop_)\d+|\"created\": ?\d+")


def masked(data: bytes) -> bytes:
    """``data`` with the loopback server's generated ids and timestamps masked."""
    return _IDS.sub(b"ID", data)


def call(base: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes, str | None]:
    """POST with raw httpx, reading the answer as a stream: (status, headers, bytes read,
    the name of the transport error that cut it, if any)."""
    got = b""
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01",
               "authorization": f"Bearer {KEY}"}
    try:
        with httpx.stream("POST", base + path, json=body, headers=headers, timeout=20,
                          trust_env=False) as r:
            try:
                for chunk in r.iter_raw():
                    got += chunk
            except httpx.TransportError as e:
                return r.status_code, dict(r.headers), got, type(e).__name__
            return r.status_code, dict(r.headers), got, None
    except httpx.TransportError as e:
        return 0, {}, got, type(e).__name__


@pytest.fixture(scope="module")
def both() -> Any:
    """A loopback server and a proxy in front of it."""
    with LoopbackServer() as up, served(up.url) as proxy:
        yield up, proxy


@pytest.mark.parametrize("path,body", [("/v1/messages", BODY), ("/v1/chat/completions", CHAT)])
@pytest.mark.parametrize("fault", [Fault.rate_limited(retry_after=7), Fault.overloaded(),
                                   Fault.error(503, retry_after="Wed, 21 Oct 2037 07:28:00 GMT")],
                         ids=["429", "529", "503-date"])
def test_error_statuses_relayed_verbatim(both: Any, path: str, body: dict[str, Any],
                                         fault: Fault) -> None:
    """An upstream error answer (429 with retry-after, 529, 503 with an HTTP-date
    retry-after) reaches the client with the same status, retry-after and body bytes."""
    up, proxy = both
    up.enqueue(fault)
    direct = call(up.url, path, body)
    up.reset_records()
    up.enqueue(fault)
    via = call(proxy.url, path, body)
    assert len(up.requests) == 1                       # not retried by the proxy
    assert via[0] == direct[0] == fault.status
    assert via[1].get("retry-after") == direct[1].get("retry-after") == fault.retry_after
    assert via[1].get("x-should-retry") == direct[1].get("x-should-retry")
    assert via[2] == direct[2] and via[3] is direct[3] is None


@pytest.mark.parametrize("path,body", [("/v1/messages", BODY), ("/v1/chat/completions", CHAT)])
@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_truncated_answer_cut_at_the_same_byte(both: Any, path: str, body: dict[str, Any],
                                               stream: bool) -> None:
    """An answer the upstream cuts off (a stream after 3 events, a JSON body half way)
    reaches the client cut off at the same byte, ending in a transport error, not a
    complete answer."""
    up, proxy = both
    body = {**body, "stream": stream}
    # a streamed chat call goes upstream asking for usage (the proxy adds
    # stream_options.include_usage to count the call): the direct call asks the same
    direct_body = {**body, "stream_options": {"include_usage": True}} \
        if stream and path == "/v1/chat/completions" else body
    up.enqueue(Fault.truncated_stream(after_events=3))
    direct = call(up.url, path, direct_body)
    up.enqueue(Fault.truncated_stream(after_events=3))
    via = call(proxy.url, path, body)
    assert direct[3] is not None and via[3] is not None
    assert via[0] == direct[0] == 200
    assert masked(via[2]) == masked(direct[2]) and via[2]
    assert proxy.proxy.stats.broken_streams >= 1


def test_reset_before_any_answer_is_a_502_naming_it(both: Any) -> None:
    """A connection the upstream resets before answering is a 502 to the client (an ASGI
    server cannot reset a connection for the app) with a provider-shaped error body and
    x-compactor-upstream-error: connection; the call is not retried."""
    up, proxy = both
    up.reset_records()
    up.enqueue(Fault.reset())
    direct = call(up.url, "/v1/messages", BODY)
    assert direct[0] == 0 and direct[3] is not None
    up.reset_records()
    up.enqueue(Fault.reset())
    status, headers, data, err = call(proxy.url, "/v1/messages", BODY)
    assert (status, err) == (502, None)
    assert headers["x-compactor-upstream-error"].startswith("connection")
    assert json.loads(data)["error"]["type"] == "api_error"
    assert len(up.requests) == 1


async def test_sdk_clients_see_the_same_errors(both: Any) -> None:
    """The SDKs raise the same exception, with the same status and retry-after, through
    the proxy as directly (429 on anthropic, 529 on openai, a truncated stream on both)."""
    up, proxy = both

    async def anthropic_error(base: str, fault: Fault, stream: bool) -> BaseException:
        c = anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0)
        up.enqueue(fault)
        try:
            if stream:
                async with c.messages.stream(**BODY) as s:
                    await s.get_final_message()
            else:
                await c.messages.create(**BODY)
        except Exception as e:  # noqa: BLE001 -- the SDK's own error, whatever it is
            return e
        finally:
            await c.close()
        raise AssertionError("no error")

    async def openai_error(base: str, fault: Fault, stream: bool) -> BaseException:
        c = openai.AsyncOpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
        up.enqueue(fault)
        try:
            if stream:
                async for _ in await c.chat.completions.create(stream=True, **CHAT):
                    pass
            else:
                await c.chat.completions.create(**CHAT)
        except Exception as e:  # noqa: BLE001 -- a cut stream surfaces as the transport error
            return e
        finally:
            await c.close()
        raise AssertionError("no error")

    for fn, fault, stream in [(anthropic_error, Fault.rate_limited(retry_after=3), False),
                              (openai_error, Fault.overloaded(), False),
                              (anthropic_error, Fault.truncated_stream(2), True),
                              (openai_error, Fault.truncated_stream(2), True)]:
        d = await fn(up.url, fault, stream)
        v = await fn(proxy.url, fault, stream)
        assert type(v) is type(d), (fault, d, v)
        if hasattr(d, "status_code"):
            assert v.status_code == d.status_code
            assert v.response.headers.get("retry-after") == d.response.headers.get("retry-after")
