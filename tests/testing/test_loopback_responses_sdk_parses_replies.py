"""The loopback server's POST /v1/responses, read by the real `openai` package: JSON and
SSE replies, text, function calls and reasoning, parsed into the SDK's own objects."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Mapping

import openai
import pytest
from openai.types.responses import (Response, ResponseFunctionToolCall, ResponseOutputMessage,
                                    ResponseReasoningItem)

from compactor.testing import RESPONSES_PATH, LoopbackServer, Reply

DEADLINE = 30.0          # seconds for a whole test's HTTP exchange
TOOLS = [{"type": "function", "name": "search", "description": "Search flights.",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                         "required": ["q"]}}]


class ItemTokenizer:
    """100 tokens per input item (a string input is one item), 1 character a token for
    output: counts a test can state without the server's own tokenizer."""

    chars_per_token = 1.0

    def count(self, body: Mapping[str, Any]) -> int:
        items = body.get("input")
        return 100 * (1 if isinstance(items, str) else len(items or []))


def client(server: LoopbackServer, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", timeout=10,
                              max_retries=kw.pop("max_retries", 0), **kw)


def call_then_answer(request) -> Reply:
    """A function call first; a text answer once the input carries its output."""
    items = request.json.get("input")
    if isinstance(items, list) and any(isinstance(i, Mapping)
                                       and i.get("type") == "function_call_output"
                                       for i in items):
        return Reply(text="Found 3 flights to Oslo.")
    return Reply(text="Let me look.", tool_uses=(("search", {"q": "OSL"}),))


async def test_json_text_reply_parses_with_usage():
    """A non-streamed text reply is an SDK `Response` with one assistant message whose
    text is the scripted text, and usage counts the request and reply tokens."""
    with LoopbackServer(lambda r: "Hello from the loopback.", tokenizer=ItemTokenizer()) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            r = await c.responses.create(model="gpt-4o-mini", input="hi",
                                         instructions="Be brief.")
        await c.close()
        assert srv.violations == []
    assert type(r) is Response and r.status == "completed" and r.model == "gpt-4o-mini"
    assert r.instructions == "Be brief."
    assert [type(o) for o in r.output] == [ResponseOutputMessage]
    assert r.output_text == "Hello from the loopback."
    assert r.usage.input_tokens == 100
    assert r.usage.output_tokens == len("Hello from the loopback.")
    assert r.usage.total_tokens == 100 + len("Hello from the loopback.")
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0


async def test_json_function_call_round_trips_as_next_input():
    """A scripted tool use comes back as a `function_call` item with JSON-string
    arguments; sending it back with its `function_call_output` is a valid request that
    gets the final text."""
    with LoopbackServer(call_then_answer) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            first = await c.responses.create(model="gpt-4o-mini", input="Flights to Oslo?",
                                             tools=TOOLS)
            calls = [o for o in first.output if o.type == "function_call"]
            history: list[Any] = [{"role": "user", "content": "Flights to Oslo?"}]
            history += [o.model_dump(exclude_none=True) for o in first.output]
            history += [{"type": "function_call_output", "call_id": calls[0].call_id,
                         "output": "3 flights"}]
            second = await c.responses.create(model="gpt-4o-mini", input=history, tools=TOOLS)
        await c.close()
        assert srv.violations == []
        assert [q.status for q in srv.requests_to(RESPONSES_PATH)] == [200, 200]
    assert [type(o) for o in first.output] == [ResponseOutputMessage, ResponseFunctionToolCall]
    assert calls[0].name == "search" and json.loads(calls[0].arguments) == {"q": "OSL"}
    assert calls[0].call_id and calls[0].id and calls[0].id != calls[0].call_id
    assert second.output_text == "Found 3 flights to Oslo."


async def test_stream_sends_the_documented_event_sequence():
    """`stream=True` yields the Responses API's semantic events in order, numbered from
    0, whose deltas add up to the final response's text and arguments."""
    with LoopbackServer(lambda r: Reply(text="Checking flights now, one moment please.",
                                        tool_uses=(("search", {"q": "OSL", "n": 3}),))) as srv:
        c = client(srv)
        events = []
        async with asyncio.timeout(DEADLINE):
            stream = await c.responses.create(model="gpt-4o-mini", input="Oslo?", tools=TOOLS,
                                              stream=True)
            async for ev in stream:
                events.append(ev)
        await c.close()
        assert srv.violations == []
    kinds = [e.type for e in events]
    squeezed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert squeezed == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    assert kinds.count("response.output_text.delta") > 1        # really streamed in pieces
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert text == final.output_text == "Checking flights now, one moment please."
    assert json.loads(args) == {"q": "OSL", "n": 3} == json.loads(final.output[1].arguments)
    assert events[0].response.id == final.id and events[0].response.status == "in_progress"
    assert final.usage is not None and final.usage.output_tokens > 0


async def test_stream_helper_accumulates_final_response_with_reasoning():
    """`responses.stream(...)` (the SDK's accumulating helper) ends with a final response
    holding the reasoning item, the message and the call, and reports reasoning tokens."""
    reasoning = "The user wants flights; call search."
    with LoopbackServer(lambda r: Reply(text="Looking.", tool_uses=(("search", {"q": "OSL"}),),
                                        reasoning=reasoning),
                        tokenizer=ItemTokenizer()) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            async with c.responses.stream(model="gpt-4o-mini", input="Oslo?", tools=TOOLS,
                                          include=["reasoning.encrypted_content"]) as stream:
                seen = [ev.type async for ev in stream]
                final = await stream.get_final_response()
        await c.close()
        assert srv.violations == []
    assert "response.reasoning_summary_text.delta" in seen
    kinds = (ResponseReasoningItem, ResponseOutputMessage, ResponseFunctionToolCall)
    assert len(final.output) == 3      # the helper's parsed subclasses of the SDK types
    assert all(isinstance(o, k) for o, k in zip(final.output, kinds))
    assert final.output[0].summary[0].text == reasoning
    assert final.output[0].encrypted_content       # asked for with `include`
    assert final.output_text == "Looking."
    assert final.usage.output_tokens_details.reasoning_tokens == len(reasoning)
    assert final.usage.output_tokens == len(reasoning) + len("Looking.") \
        + len("search") + len(json.dumps({"q": "OSL"}))


async def test_reasoning_item_sent_back_before_its_call_is_valid():
    """The reasoning, message and call items of a reply, sent back in order with the
    call's output, keep the Responses rules (the server records no violation)."""
    with LoopbackServer(lambda r: Reply(text=None, tool_uses=(("search", {"q": "OSL"}),),
                                        reasoning="search first")) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            first = await c.responses.create(model="o4-mini", input="Oslo?", tools=TOOLS)
            call = first.output[-1]
            again = [{"role": "user", "content": "Oslo?"},
                     *[o.model_dump(exclude_none=True) for o in first.output],
                     {"type": "function_call_output", "call_id": call.call_id, "output": "3"}]
            await c.responses.create(model="o4-mini", input=again, tools=TOOLS)
        await c.close()
        assert [o.type for o in first.output] == ["reasoning", "function_call"]
        assert first.output[0].encrypted_content is None     # not asked for with `include`
        assert srv.violations == []


async def test_input_tokens_endpoint_counts_with_the_server_tokenizer():
    """`responses.input_tokens.count(...)` gets the server tokenizer's count of the same
    input that `usage.input_tokens` reports, and checks the input like a create call."""
    items = [{"role": "user", "content": "Flights to Oslo?"},
             {"role": "assistant", "content": "Which day?"}, {"role": "user", "content": "Fri"}]
    with LoopbackServer(tokenizer=ItemTokenizer()) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            counted = await c.responses.input_tokens.count(input=items)
            used = await c.responses.create(model="gpt-4o-mini", input=items)
            with pytest.raises(openai.BadRequestError):
                await c.responses.input_tokens.count(input=[
                    {"type": "function_call_output", "call_id": "nope", "output": "x"}])
        await c.close()
        assert [v.rule for v in srv.violations] == ["orphan_result"]
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == used.usage.input_tokens == 300


async def test_repeated_prefix_is_reported_as_cached_tokens():
    """A request that repeats an earlier request's input items and adds one reports the
    repeated prefix's tokens as `cached_tokens`; a different first item caches nothing."""
    turn1 = [{"role": "user", "content": "Flights to Oslo?"}]
    turn2 = turn1 + [{"role": "assistant", "content": "Which day?"},
                     {"role": "user", "content": "Friday."}]
    with LoopbackServer(lambda r: "ok", tokenizer=ItemTokenizer()) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            a = await c.responses.create(model="gpt-4o-mini", input=turn1)
            b = await c.responses.create(model="gpt-4o-mini", input=turn2)
            d = await c.responses.create(model="gpt-4o-mini",
                                         input=[{"role": "user", "content": "Trains?"}] + turn2[1:])
        await c.close()
    assert a.usage.input_tokens_details.cached_tokens == 0
    assert b.usage.input_tokens == 300 and b.usage.input_tokens_details.cached_tokens == 100
    assert d.usage.input_tokens_details.cached_tokens == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_max_tokens_stop_gives_incomplete_response(stream):
    """A reply scripted to stop on max tokens is an `incomplete` response (reason
    `max_output_tokens`); streamed, it ends with `response.incomplete`."""
    with LoopbackServer(lambda r: Reply(text="cut sho", stop_reason="max_tokens")) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            if stream:
                events = [ev async for ev in await c.responses.create(
                    model="gpt-4o-mini", input="hi", max_output_tokens=16, stream=True)]
                assert events[-1].type == "response.incomplete"
                r = events[-1].response
            else:
                r = await c.responses.create(model="gpt-4o-mini", input="hi",
                                             max_output_tokens=16)
        await c.close()
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text == "cut sho"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_raw_output_items_are_sent_as_scripted(stream):
    """`Reply(items=...)` sends the scripted output items (own `call_id`, two calls, a
    mapping of arguments JSON-encoded) and the SDK parses them in that order."""
    items = ({"type": "message", "role": "assistant",
              "content": [{"type": "output_text", "text": "Two searches."}]},
             {"type": "function_call", "call_id": "call_mine_1", "name": "search",
              "arguments": {"q": "OSL"}},
             {"type": "function_call", "call_id": "call_mine_2", "name": "search",
              "arguments": '{"q": "BGO"}'})
    with LoopbackServer(lambda r: Reply(items=items)) as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            if stream:
                events = [e async for e in await c.responses.create(
                    model="gpt-4o-mini", input="hi", tools=TOOLS, stream=True)]
                r = events[-1].response
            else:
                r = await c.responses.create(model="gpt-4o-mini", input="hi", tools=TOOLS)
        await c.close()
    assert [o.type for o in r.output] == ["message", "function_call", "function_call"]
    assert r.output_text == "Two searches."
    assert [(o.call_id, json.loads(o.arguments)) for o in r.output[1:]] == [
        ("call_mine_1", {"q": "OSL"}), ("call_mine_2", {"q": "BGO"})]
    assert len({o.id for o in r.output}) == 3


async def test_request_id_header_reaches_the_sdk():
    """The OpenAI SDK reads a request id (`x-request-id`) from every reply, one per request."""
    with LoopbackServer() as srv:
        c = client(srv)
        async with asyncio.timeout(DEADLINE):
            a = await c.responses.create(model="gpt-4o-mini", input="hi")
            b = await c.responses.create(model="gpt-4o-mini", input="hi")
        await c.close()
    assert a._request_id and b._request_id and a._request_id != b._request_id
