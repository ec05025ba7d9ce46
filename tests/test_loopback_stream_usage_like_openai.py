"""The loopback server's streamed chat completions report usage as the OpenAI API does
(API reference, ``stream_options.include_usage``): with the option, one extra chunk with
``"choices": []`` and the request's usage comes before ``[DONE]`` and every other chunk has
``"usage": null``; without it, no chunk carries usage. Driven with the real ``openai`` SDK."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import openai
import pytest

from compactor.testing import CHAT_PATH, Fault, LoopbackServer, Reply

pytestmark = pytest.mark.timeout(60)

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of Norway?"}]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as s:
        yield s


@pytest.fixture
def client(server: LoopbackServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0,
                      timeout=10)
    yield c
    c.close()


def _sse_objects(body: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` kept as the string)."""
    out: list[Any] = []
    for event in body.decode().split("\n\n"):
        if event.startswith("data: "):
            payload = event[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_include_usage_adds_a_choiceless_usage_chunk_before_done(server, client):
    """With include_usage the last chunk has choices == [] and the usage of the same request
    answered without streaming; every chunk before it has usage None."""
    plain = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    *before, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert last.usage.total_tokens == plain.usage.total_tokens
    assert before and all(c.usage is None and len(c.choices) == 1 for c in before)
    assert before[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in before) \
        == plain.choices[0].message.content
    assert server.violations == []


@pytest.mark.parametrize("options", [None, {"include_usage": False}, {}],
                         ids=["unset", "false", "empty"])
def test_without_include_usage_no_chunk_carries_usage(server, client, options):
    """Without include_usage (not given, false, or stream_options without it) no chunk has
    usage and every chunk has its one choice."""
    kw = {} if options is None else {"stream_options": options}
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                 **kw))
    assert chunks and all(c.usage is None for c in chunks)
    assert all(len(c.choices) == 1 for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert server.violations == []


@pytest.mark.parametrize("include", [True, False], ids=["include_usage", "no_option"])
def test_on_the_wire_usage_is_null_or_absent(server, include):
    """On the wire: with include_usage every choice chunk has the key "usage" set to null
    and only the choiceless chunk has a usage object; without it no frame has the key."""
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "stream": True}
    if include:
        body["stream_options"] = {"include_usage": True}
    r = httpx.post(server.url + CHAT_PATH, json=body, timeout=10, trust_env=False)
    assert r.status_code == 200
    frames = _sse_objects(r.content)
    assert frames[-1] == "[DONE]"
    chunks = frames[:-1]
    if include:
        assert [c["choices"] == [] for c in chunks] == [False] * (len(chunks) - 1) + [True]
        assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
        assert set(chunks[-1]["usage"]) >= {"prompt_tokens", "completion_tokens",
                                            "total_tokens"}
    else:
        assert chunks and all("usage" not in c and len(c["choices"]) == 1 for c in chunks)


def test_a_tool_call_reply_streams_its_usage_chunk_last(server, client):
    """A streamed tool call with include_usage: the usage chunk still comes after the
    finish_reason "tool_calls" chunk, and only there."""
    server.enqueue(Fault.reply_with(Reply(text="Looking.",
                                          tool_uses=(("search", {"q": "Oslo"}),))))
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].choices == [] and chunks[-2].choices[0].finish_reason == "tool_calls"
    calls = [t for c in chunks[:-1] for t in c.choices[0].delta.tool_calls or []]
    assert [t.function.name for t in calls] == ["search"]


def test_a_stream_cut_before_the_usage_chunk_never_delivers_usage(server, client):
    """A truncated stream cut right after the finish chunk (before the usage chunk) ends in
    a connection error, and the chunks the SDK yielded carry no usage."""
    server.enqueue(Fault.truncated_stream(after_events=3))   # role, content, finish
    got = []
    with pytest.raises(openai.APIConnectionError):
        for c in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True}):
            got.append(c)
    assert len(got) == 3 and all(c.usage is None and c.choices for c in got)
    assert got[-1].choices[0].finish_reason == "stop"
    assert server.requests[-1].fault == "truncate"


@pytest.mark.parametrize("extra, detail", [
    ({"stream": True, "stream_options": "yes"},
     "Invalid type for 'stream_options': expected an object, but got a string instead."),
    ({"stream": True, "stream_options": {"include_usage": "true"}},
     "Invalid type for 'stream_options.include_usage': expected a boolean, but got a "
     "string instead."),
    ({"stream_options": {"include_usage": True}},
     "The 'stream_options' parameter is only allowed when 'stream' is enabled."),
], ids=["not-an-object", "include-usage-not-bool", "without-stream"])
def test_bad_stream_options_are_a_400_naming_the_field(server, extra, detail):
    """A stream_options that is not an object, an include_usage that is not a bool, or
    stream_options on a call that does not stream: HTTP 400 with param "stream_options",
    and the request is listed in violations."""
    r = httpx.post(server.url + CHAT_PATH, json={"model": MODEL, "messages": MESSAGES, **extra},
                   timeout=10, trust_env=False)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "stream_options"
    assert detail in err["message"]
    assert [(v.rule, v.detail) for v in server.violations] == [("stream_options", detail)]


def test_the_sdk_sees_bad_stream_options_as_bad_request(server, client):
    """Through the SDK, stream_options on a non-streamed call is a BadRequestError."""
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                       stream_options={"include_usage": True})
    assert e.value.param == "stream_options"
