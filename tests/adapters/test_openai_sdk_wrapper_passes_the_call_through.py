"""CompactingOpenAI changes only the history of a call: every other argument, header and
attribute is the SDK's, streamed chat calls get the usage without the caller seeing more
than it asked for, and a missing ``openai`` package is a one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest

from compactor import MessageCompactor
from compactor.adapters.openai_sdk import CompactingOpenAI, CompactingSyncOpenAI
from compactor.testing import CHAT_PATH, RESPONSES_PATH, Fault, LoopbackServer, Reply

from openai_sdk_support import AGENT_MODEL, API_KEY, TOOLS_CHAT, TOOLS_RESPONSES, WINDOW

pytestmark = pytest.mark.timeout(60)

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]


@pytest.fixture
def server():
    with LoopbackServer(max_context_tokens=WINDOW) as s:
        yield s


@pytest.fixture
async def raw(server: LoopbackServer):
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
    yield client
    await client.close()


async def test_other_arguments_and_headers_reach_the_server_unchanged(server, raw):
    """Arguments other than messages, and extra headers, arrive as given; the pin flag the
    compactor honours is stripped before sending."""
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    extra = dict(temperature=0.2, user="u-42", metadata={"run": "r-1"}, tool_choice="auto",
                 parallel_tool_calls=False, stop=["END"], seed=7)
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "keep me", "compactor_pin": True}]
    got = await client.chat.completions.create(model=AGENT_MODEL, messages=msgs, tools=TOOLS_CHAT,
                                               max_tokens=64, extra_headers={"x-trace-id": "t-1"},
                                               **extra)
    assert isinstance(got, openai.types.chat.ChatCompletion)
    rec = server.requests_to(CHAT_PATH)[-1]
    assert rec.headers["x-trace-id"] == "t-1"
    assert {k: rec.json[k] for k in extra} == extra
    assert rec.json["tools"] == TOOLS_CHAT and rec.json["max_tokens"] == 64
    assert rec.json["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "keep me"}]
    assert "stream" not in rec.json and "stream_options" not in rec.json
    assert server.violations == []


async def test_sdk_message_objects_in_the_history_are_sent_as_the_sdk_sends_them(server, raw):
    """An agent that appends completion.choices[0].message (the SDK's own object) to its
    history sends, through the wrapper, the body the bare SDK sends for it."""
    first = await raw.chat.completions.create(model=AGENT_MODEL, messages=HELLO)
    history = [*HELLO, first.choices[0].message, {"role": "user", "content": "and again"}]
    await raw.chat.completions.create(model=AGENT_MODEL, messages=history)
    bare = server.requests_to(CHAT_PATH)[-1].json["messages"]
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW, session_id="objs")
    await client.chat.completions.create(model=AGENT_MODEL, messages=history)
    assert server.requests_to(CHAT_PATH)[-1].json["messages"] == bare
    assert client.last_result is not None and len(client.last_result.messages) == 4


async def test_other_attributes_are_the_wrapped_clients(raw):
    """models, api_key, base_url and chat.completions' other members come from the wrapped
    client; with_options returns a wrapper that still compacts, sharing the calibrator."""
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    assert client.models is raw.models and client.api_key == API_KEY
    assert client.base_url == raw.base_url
    assert client.chat.completions.with_raw_response is not None
    twin = client.with_options(timeout=3.0)
    assert isinstance(twin, CompactingOpenAI) and twin.calibrator is client.calibrator
    assert twin.compactor is client.compactor and twin.timeout == 3.0
    await twin.chat.completions.create(model=AGENT_MODEL, messages=HELLO)
    assert twin.last_result is not None and twin.calibration(AGENT_MODEL).observations == 1


async def test_a_caller_that_set_include_usage_gets_its_stream_options_unchanged(server, raw):
    """stream_options the caller gave with include_usage (True or False) are sent as
    given; other stream options get include_usage added."""
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    for given, sent in (({"include_usage": False}, {"include_usage": False}),
                        ({"include_usage": True}, {"include_usage": True}),
                        ({"include_obfuscation": False},
                         {"include_obfuscation": False, "include_usage": True})):
        s = await client.chat.completions.create(model=AGENT_MODEL, messages=HELLO, stream=True,
                                                 stream_options=given)
        assert isinstance(s, openai.AsyncStream)
        assert [c async for c in s]
        assert server.requests_to(CHAT_PATH)[-1].json["stream_options"] == sent
    assert server.violations == []


@pytest.mark.parametrize("caller_asked", [False, True], ids=["added", "asked"])
async def test_the_usage_chunk_the_wrapper_asked_for_is_read_but_not_passed_on(server, raw,
                                                                               caller_asked):
    """Against the loopback, which streams usage only in a separate choices-less chunk when
    include_usage is set (as OpenAI does), the wrapper calibrates from it; the caller sees
    that chunk only if it asked."""
    # the oracle: the server's prompt tokens for the same request, not streamed
    expected = (await raw.chat.completions.create(model=AGENT_MODEL,
                                                  messages=HELLO)).usage.prompt_tokens
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    kw = {"stream_options": {"include_usage": True}} if caller_asked else {}
    s = await client.chat.completions.create(model=AGENT_MODEL, messages=HELLO, stream=True,
                                             **kw)
    chunks = [c async for c in s]
    assert server.requests_to(CHAT_PATH)[-1].json["stream_options"] == {"include_usage": True}
    usage_only = [False] if caller_asked else []   # the choices-less chunk, when asked for
    assert [bool(c.choices) for c in chunks] == [True, True, True] + usage_only
    assert all(c.usage is None for c in chunks[:3])
    if caller_asked:
        assert chunks[-1].usage.prompt_tokens == expected
    state = client.calibration(AGENT_MODEL)
    assert state.observations == 1
    assert state.predict(client.last_result.tokens_after) == pytest.approx(expected)
    assert server.violations == []


def test_the_sync_client_usage_chunk_is_read_but_not_passed_on(server):
    """The sync wrapper's Stream behaves alike: calibrated, the added usage chunk hidden."""
    raw = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
    comp = MessageCompactor()
    client = CompactingSyncOpenAI(raw, comp, window=WINDOW)
    try:
        s = client.chat.completions.create(model=AGENT_MODEL, messages=HELLO, stream=True)
        assert isinstance(s, openai.Stream)
        chunks = list(s)
    finally:
        raw.close()
        comp.close()
    assert server.requests_to(CHAT_PATH)[-1].json["stream_options"] == {"include_usage": True}
    assert [bool(c.choices) for c in chunks] == [True, True, True]
    assert client.calibration(AGENT_MODEL).observations == 1
    assert server.violations == []


async def test_a_call_without_a_history_list_is_forwarded_for_the_sdk_to_judge(server, raw):
    """A call whose messages is not a list reaches the SDK unchanged (its own error comes
    back), and nothing is compacted."""
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=AGENT_MODEL, messages=[])
    assert client.last_result is None


def test_bad_settings_are_config_errors():
    """A non-positive window, a non-string session id or a non-positive compaction timeout
    is a ConfigError naming the argument."""
    from compactor import ConfigError

    raw = openai.OpenAI(api_key=API_KEY, base_url="http://127.0.0.1:9/v1")
    for kw, field in (({"window": 0}, "window"), ({"session_id": 3}, "session_id"),
                      ({"compact_timeout_s": 0}, "compact_timeout_s")):
        with pytest.raises(ConfigError) as e:
            CompactingSyncOpenAI(raw, **kw)
        assert e.value.field == field
    raw.close()


def test_a_missing_openai_package_is_one_line_naming_the_extra(tmp_path: Path):
    """Importing the adapter without the openai package raises MissingExtraError: one line
    naming the package and the extra to install."""
    code = ("import sys; sys.modules['openai'] = None\n"
            "from compactor._optional import MissingExtraError\n"
            "try:\n    import compactor.adapters.openai_sdk\n"
            "except MissingExtraError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        "compactor.adapters.openai_sdk needs openai, which is not installed; fix: "
        "pip install 'agent-context-compactor[openai]'"]


# --------------------------------------------------------------------------- Responses
def _long_items(n: int) -> list[dict]:
    """``n`` user/assistant exchanges, ~600 characters each: far over a 1,000-token window."""
    items: list[dict] = []
    for k in range(n):
        items.append({"role": "user", "content": f"question {k}: " + "why is the build red? " * 25})
        items.append({"role": "assistant", "content": f"answer {k}: " + "a flaky test. " * 40})
    items.append({"role": "user", "content": "summarize"})
    return items


async def test_a_call_continuing_a_stored_response_is_forwarded_uncompacted(server, raw):
    """With previous_response_id (or conversation) the provider holds the history, so the
    input is sent exactly as given, however long, and nothing is compacted."""
    client = CompactingOpenAI(raw, MessageCompactor(), window=20_000)
    items = _long_items(12)
    first = await client.responses.create(model=AGENT_MODEL, input=items)
    assert client.last_result is not None and not client.last_result.compacted
    small = CompactingOpenAI(raw, MessageCompactor(), window=1_000)   # would have to compact
    more = [{"role": "user", "content": "more " * 300}, *items]
    got = await small.responses.create(model=AGENT_MODEL, previous_response_id=first.id,
                                       input=more)
    assert isinstance(got, openai.types.responses.Response)
    assert server.requests_to(RESPONSES_PATH)[-1].json["input"] == more
    assert small.last_result is None


async def test_a_string_input_is_forwarded_unchanged(server, raw):
    """responses.create(input="...") has no item list to compact: sent as given."""
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    got = await client.responses.create(model=AGENT_MODEL, input="hello", instructions="Be brief.")
    assert isinstance(got, openai.types.responses.Response)
    body = server.requests_to(RESPONSES_PATH)[-1].json
    assert body["input"] == "hello" and body["instructions"] == "Be brief."
    assert client.last_result is None


async def test_response_output_objects_in_the_input_are_sent_as_the_sdk_sends_them(server, raw):
    """An agent that extends its input with response.output (the SDK's own items) sends,
    through the wrapper, the body the bare SDK sends; the pin flag is stripped."""
    items = [{"role": "user", "content": "hello"}]
    server.enqueue(Fault.reply_with(Reply(text="Let me look.",
                                          tool_uses=(("read_file", {"path": "a.py"}),))))
    first = await raw.responses.create(model=AGENT_MODEL, input=items, tools=TOOLS_RESPONSES)
    history = [*items, *first.output]
    history += [{"type": "function_call_output", "call_id": o.call_id, "output": "42"}
                for o in first.output if o.type == "function_call"]
    history.append({"role": "user", "content": "and again"})
    await raw.responses.create(model=AGENT_MODEL, input=history, tools=TOOLS_RESPONSES)
    bare = server.requests_to(RESPONSES_PATH)[-1].json["input"]
    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW, session_id="objs")
    pinned = [{**history[0], "compactor_pin": True}, *history[1:]]
    await client.responses.create(model=AGENT_MODEL, input=pinned, tools=TOOLS_RESPONSES)
    assert server.requests_to(RESPONSES_PATH)[-1].json["input"] == bare
    assert client.last_result is not None and len(client.last_result.messages) == len(history)
    assert any(o.type == "function_call" for o in first.output)   # the premise: a call was made
    assert server.violations == []


async def test_parse_compacts_and_returns_the_sdks_parsed_objects(server, raw):
    """chat.completions.parse and responses.parse (structured outputs) go through the
    compactor (pin flags stripped, a result recorded) and return the SDK's parsed objects."""
    import pydantic

    class Answer(pydantic.BaseModel):
        answer: str

    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    server.enqueue(Fault.reply_with(Reply(text='{"answer": "4"}')))
    got = await client.chat.completions.parse(
        model=AGENT_MODEL, response_format=Answer,
        messages=[{"role": "user", "content": "2 + 2?", "compactor_pin": True}])
    assert got.choices[0].message.parsed == Answer(answer="4")
    assert client.last_result is not None and client.last_result.fmt.value == "openai"
    server.enqueue(Fault.reply_with(Reply(text='{"answer": "5"}')))
    got = await client.responses.parse(
        model=AGENT_MODEL, text_format=Answer,
        input=[{"role": "user", "content": "2 + 3?", "compactor_pin": True}])
    assert got.output_parsed == Answer(answer="5")
    assert client.last_result.fmt.value == "responses"
    assert server.violations == []              # the pin flags never reached the server
    assert client.calibration(AGENT_MODEL).observations == 2


async def test_the_sdks_stream_helpers_compact_and_yield_the_sdks_streams(server, raw):
    """chat.completions.stream(...) and responses.stream(...) compact on entry (pin flags
    stripped), yield the SDK's own helper streams, and calibrate from their usage."""
    from openai.lib.streaming.chat import AsyncChatCompletionStream
    from openai.lib.streaming.responses import AsyncResponseStream

    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    pinned = [{"role": "user", "content": "hello", "compactor_pin": True}]
    async with client.chat.completions.stream(model=AGENT_MODEL, messages=pinned) as s:
        assert isinstance(s, AsyncChatCompletionStream)
        done = await s.get_final_completion()
    assert done.choices[0].message.content and client.last_result.fmt.value == "openai"
    assert server.requests_to(CHAT_PATH)[-1].json["stream_options"] == {"include_usage": True}
    async with client.responses.stream(model=AGENT_MODEL, input=pinned) as s:
        assert isinstance(s, AsyncResponseStream)
        final = await s.get_final_response()
    assert final.output_text and client.last_result.fmt.value == "responses"
    assert server.violations == []              # the pin flags never reached the server
    assert client.calibration(AGENT_MODEL).observations == 2


def test_the_sync_stream_helpers_compact_and_yield_the_sdks_streams(server):
    """The sync wrapper's stream helpers do the same with the SDK's sync streams."""
    from openai.lib.streaming.chat import ChatCompletionStream
    from openai.lib.streaming.responses import ResponseStream

    raw = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
    comp = MessageCompactor()
    client = CompactingSyncOpenAI(raw, comp, window=WINDOW)
    pinned = [{"role": "user", "content": "hello", "compactor_pin": True}]
    try:
        with client.chat.completions.stream(model=AGENT_MODEL, messages=pinned) as s:
            assert isinstance(s, ChatCompletionStream)
            assert s.get_final_completion().choices[0].message.content
        with client.responses.stream(model=AGENT_MODEL, input=pinned) as s:
            assert isinstance(s, ResponseStream)
            assert s.get_final_response().output_text
    finally:
        raw.close()
        comp.close()
    assert server.violations == []
    assert client.calibration(AGENT_MODEL).observations == 2


async def test_an_unanswered_tool_call_is_an_invalid_history_error_before_any_request(server, raw):
    """A history whose tool call has no answer raises InvalidHistoryError naming the call,
    for chat and for Responses, and nothing reaches the server."""
    from compactor import InvalidHistoryError

    client = CompactingOpenAI(raw, MessageCompactor(), window=WINDOW)
    chat = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "read_file", "arguments": "{}"}}]},
            {"role": "user", "content": "well?"}]
    with pytest.raises(InvalidHistoryError, match="call_1"):
        await client.chat.completions.create(model=AGENT_MODEL, messages=chat)
    items = [{"role": "user", "content": "hi"},
             {"type": "function_call", "call_id": "call_2", "name": "read_file", "arguments": "{}"},
             {"role": "user", "content": "well?"}]
    with pytest.raises(InvalidHistoryError, match="call_2"):
        await client.responses.create(model=AGENT_MODEL, input=items)
    assert server.requests == []
