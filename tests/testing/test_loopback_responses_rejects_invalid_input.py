"""The loopback server's POST /v1/responses answers a request that breaks a documented
Responses API rule (docs/provider-rules.md) with HTTP 400 and records the rule in
`server.violations`; valid shapes (parallel calls, stored conversations) pass."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from compactor._format import PIN_KEY
from compactor.testing import RESPONSES_PATH, LoopbackServer

DEADLINE = 30.0
USER = {"role": "user", "content": "Flights to Oslo?"}


def call(cid: str, arguments: Any = '{"q": "OSL"}') -> dict[str, Any]:
    return {"type": "function_call", "call_id": cid, "name": "search", "arguments": arguments}


def output(cid: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": cid, "output": "3 flights"}


REASONING = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAx"}

# (case, request fields, the rules the server must record) -- rules from docs/provider-rules.md
INVALID = [
    ("call without output", {"input": [USER, call("c1"), {"role": "user", "content": "and?"}]},
     {"unanswered_call"}),
    ("call open at the end", {"input": [USER, call("c1")]}, {"unanswered_call"}),
    ("output without call", {"input": [USER, output("c9")]}, {"orphan_result"}),
    ("output before its call", {"input": [USER, output("c1"), call("c1")]},
     {"orphan_result", "unanswered_call"}),
    ("assistant message between call and output", {"input": [
        USER, call("c1"), {"role": "assistant", "content": "Searching."}, output("c1")]},
     {"unanswered_call", "orphan_result"}),
    ("output twice", {"input": [USER, call("c1"), output("c1"), output("c1")]},
     {"duplicate_result"}),
    ("call id twice", {"input": [USER, call("c1"), call("c1"), output("c1")]},
     {"duplicate_tool_id"}),
    ("arguments as an object", {"input": [USER, call("c1", {"q": "OSL"}), output("c1")]},
     {"arguments_type"}),
    ("reasoning followed by a user message", {"input": [USER, REASONING, USER]},
     {"orphan_reasoning"}),
    ("reasoning last", {"input": [USER, REASONING]}, {"orphan_reasoning"}),
    ("tool role", {"input": [USER, {"role": "tool", "content": "x"}]}, {"role"}),
    ("empty content", {"input": [{"role": "user", "content": []}]}, {"empty_content"}),
    ("empty input list", {"input": []}, {"empty_messages"}),
    ("instructions as a list", {"input": "hi", "instructions": [{"role": "system",
                                                                  "content": "x"}]},
     {"instructions"}),
    ("chat-shaped tool", {"input": "hi", "tools": [{"type": "function", "function": {
        "name": "search", "parameters": {"type": "object"}}}]}, {"tools"}),
    ("pin flag left on an item", {"input": [{**USER, PIN_KEY: True}]}, {"extra_field"}),
    ("max_output_tokens below 16", {"input": "hi", "max_output_tokens": 8},
     {"max_output_tokens"}),
]


@pytest.mark.parametrize("fields,rules", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
async def test_invalid_request_gets_400_and_is_recorded(fields, rules):
    """A request breaking one documented rule gets a 400 `invalid_request_error` that
    names the rule, and `server.violations` holds exactly that rule."""
    with LoopbackServer() as srv:
        c = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="test", timeout=10,
                               max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            async with asyncio.timeout(DEADLINE):
                await c.responses.create(model="gpt-4o-mini", **fields)
        await c.close()
        assert {v.rule for v in srv.violations} == rules
        assert all(v.path == RESPONSES_PATH and v.request == 0 for v in srv.violations)
        assert [r.status for r in srv.requests] == [400]
    assert err.value.status_code == 400
    assert err.value.body["type"] == "invalid_request_error"
    assert all(rule in err.value.body["message"] for rule in rules)
    assert err.value.body["param"] == PARAM.get(next(iter(rules)), "input")


# the `param` the API names in its 400 body, for the request-level rules
PARAM = {"instructions": "instructions", "tools": "tools",
         "max_output_tokens": "max_output_tokens"}


VALID = [
    ("string input", {"input": "hi"}),
    ("parallel calls then outputs", {"input": [USER, call("c1"), call("c2"), output("c2"),
                                               output("c1")]}),
    ("reasoning before its call", {"input": [USER, REASONING, call("c1"), output("c1")]}),
    ("reasoning before an assistant message", {"input": [
        USER, REASONING, {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "Which day?"}]}, USER]}),
    ("developer and system messages", {"input": [{"role": "developer", "content": "terse"},
                                                 {"role": "system", "content": "polite"}, USER]}),
    ("output of a stored call", {"previous_response_id": "resp_earlier",
                                 "input": [output("c_stored")]}),
    ("output in a stored conversation", {"conversation": "conv_1",
                                         "input": [output("c_stored"), USER]}),
    ("stored conversation, no input", {"previous_response_id": "resp_earlier"}),
]


@pytest.mark.parametrize("fields", [c[1] for c in VALID], ids=[c[0] for c in VALID])
async def test_valid_request_is_answered_without_violation(fields):
    """A request keeping the rules is answered 200 and records no violation (an output
    may answer a call of a stored conversation named by `previous_response_id` or
    `conversation`)."""
    with LoopbackServer() as srv:
        c = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="test", timeout=10,
                               max_retries=0)
        async with asyncio.timeout(DEADLINE):
            r = await c.responses.create(model="gpt-4o-mini", **fields)
        await c.close()
        assert srv.violations == []
    assert r.status == "completed" and r.previous_response_id == fields.get("previous_response_id")


async def test_request_over_the_window_is_prompt_too_long():
    """With `max_context_tokens`, a Responses request whose input plus
    `max_output_tokens` exceeds the window gets a 400 `prompt_too_long` violation."""
    with LoopbackServer(max_context_tokens=200) as srv:
        c = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="test", timeout=10,
                               max_retries=0)
        async with asyncio.timeout(DEADLINE):
            await c.responses.create(model="gpt-4o-mini", input="short", max_output_tokens=50)
            with pytest.raises(openai.BadRequestError):
                await c.responses.create(model="gpt-4o-mini", input="short",
                                         max_output_tokens=500)
        await c.close()
        assert [v.rule for v in srv.violations] == ["prompt_too_long"]
        assert [v.request for v in srv.violations] == [1]
