"""Scripted faults on POST /v1/responses (queued by path) reach the real `openai` SDK as
the real API's failures would: retried 429s, timeouts, cut streams, broken bodies."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from compactor.testing import CHAT_PATH, RESPONSES_PATH, Fault, LoopbackServer, Reply

DEADLINE = 30.0


def client(server: LoopbackServer, **kw) -> openai.AsyncOpenAI:
    kw.setdefault("timeout", 10)
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", **kw)


async def test_rate_limit_on_responses_path_is_retried_and_leaves_chat_alone():
    """A 429 queued for /v1/responses is retried by the SDK after `retry-after`; a chat
    request made first is not affected by it."""
    with LoopbackServer() as srv:
        srv.enqueue(Fault.rate_limited(retry_after=0.05), path=RESPONSES_PATH)
        c = client(srv, max_retries=2)
        async with asyncio.timeout(DEADLINE):
            chat = await c.chat.completions.create(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": "hi"}])
            r = await c.responses.create(model="gpt-4o-mini", input="hi")
        await c.close()
        assert [(q.path, q.status) for q in srv.requests] == [
            (CHAT_PATH, 200), (RESPONSES_PATH, 429), (RESPONSES_PATH, 200)]
        retried = srv.requests[2].received_at - srv.requests[1].finished_at
        assert retried >= 0.04          # waited for retry-after (50 ms, timer slack allowed)
    assert chat.choices[0].message.content and r.output_text == "ok: hi"


async def test_server_error_body_is_the_openai_shape():
    """A queued 500 reaches the SDK as `InternalServerError` with an OpenAI error body."""
    with LoopbackServer() as srv:
        srv.enqueue(Fault.server_error(500), path=RESPONSES_PATH)
        c = client(srv)
        with pytest.raises(openai.InternalServerError) as err:
            async with asyncio.timeout(DEADLINE):
                await c.responses.create(model="gpt-4o-mini", input="hi")
        await c.close()
    assert err.value.status_code == 500
    assert err.value.body == {"message": "Internal server error", "type": "server_error",
                              "param": None, "code": None}


async def test_truncated_stream_delivers_only_the_first_events():
    """A stream cut after 4 events gives the SDK exactly those 4 events, then a
    transport error instead of `response.completed`."""
    with LoopbackServer(lambda r: Reply(text="x" * 200)) as srv:
        srv.enqueue(Fault.truncated_stream(after_events=4), path=RESPONSES_PATH)
        c = client(srv)
        got = []
        with pytest.raises((httpx.HTTPError, openai.APIError)):
            async with asyncio.timeout(DEADLINE):
                async for ev in await c.responses.create(model="gpt-4o-mini", input="hi",
                                                         stream=True):
                    got.append(ev.type)
        await c.close()
        assert srv.requests[0].fault == "truncate"
    assert got == ["response.created", "response.in_progress", "response.output_item.added",
                   "response.content_part.added"]


async def test_truncated_json_reply_is_a_connection_error():
    """A JSON reply cut in half (declared length not reached) is an SDK connection error."""
    with LoopbackServer() as srv:
        srv.enqueue(Fault.truncated_stream(), path=RESPONSES_PATH)
        c = client(srv)
        with pytest.raises(openai.APIConnectionError):
            async with asyncio.timeout(DEADLINE):
                await c.responses.create(model="gpt-4o-mini", input="hi")
        await c.close()


async def test_hang_times_out_at_the_client_deadline():
    """A hanging request ends in the SDK's `APITimeoutError` at the client's timeout."""
    with LoopbackServer() as srv:
        srv.enqueue(Fault.hang(5.0), path=RESPONSES_PATH)
        c = client(srv, timeout=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(openai.APITimeoutError):
            async with asyncio.timeout(DEADLINE):
                await c.responses.create(model="gpt-4o-mini", input="hi")
        waited = loop.time() - t0
        await c.close()
    assert 0.25 <= waited < 4.0


async def test_malformed_body_is_not_parsed_as_a_response():
    """A 200 whose body is not JSON makes the SDK raise instead of returning a response."""
    with LoopbackServer() as srv:
        srv.enqueue(Fault.malformed(), path=RESPONSES_PATH)
        c = client(srv)
        with pytest.raises((json.JSONDecodeError, openai.APIError)):
            async with asyncio.timeout(DEADLINE):
                await c.responses.create(model="gpt-4o-mini", input="hi")
        await c.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_empty_content_and_reply_with_faults(stream):
    """`Fault.empty_content` answers with no output items; `Fault.reply_with` replaces
    the responder's reply."""
    with LoopbackServer(lambda r: "from the responder") as srv:
        srv.enqueue(Fault.empty_content(), Fault.reply_with("scripted summary"),
                    path=RESPONSES_PATH)
        c = client(srv)
        out = []
        async with asyncio.timeout(DEADLINE):
            for _ in range(3):
                if stream:
                    events = [e async for e in await c.responses.create(
                        model="gpt-4o-mini", input="hi", stream=True)]
                    out.append(events[-1].response)
                else:
                    out.append(await c.responses.create(model="gpt-4o-mini", input="hi"))
        await c.close()
        assert [q.fault for q in srv.requests] == ["empty", "reply", None]
    assert out[0].output == [] and out[0].usage.output_tokens == 0
    assert [r.output_text for r in out[1:]] == ["scripted summary", "from the responder"]
