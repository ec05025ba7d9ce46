"""The OpenAI Agents SDK's `Runner`, with `OpenAIResponsesModel` on an `AsyncOpenAI`
pointed at the loopback server, completes a function-tool turn over POST /v1/responses
(JSON and streamed), and every request it sends keeps the Responses rules."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Mapping

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from compactor.testing import RESPONSES_PATH, LoopbackServer, RecordedRequest, Reply

DEADLINE = 60.0


def _outputs(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = body.get("input")
    return [i for i in items if isinstance(i, Mapping)
            and i.get("type") == "function_call_output"] if isinstance(items, list) else []


def weather_model(request: RecordedRequest) -> Reply:
    """Calls `get_weather` (after some reasoning) until the input carries its output,
    then answers with that output quoted."""
    outs = _outputs(request.json)
    if outs:
        return Reply(text=f"The weather: {outs[-1]['output']}")
    return Reply(text=None, tool_uses=(("get_weather", {"city": "Oslo"}),),
                 reasoning="The user asks for weather; call the tool.")


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
async def test_runner_completes_a_function_tool_turn(streamed):
    """`Runner.run` / `Runner.run_streamed` call the tool the server asked for, send its
    result back as a `function_call_output` with the call's `call_id` (after the
    reasoning item and the call), and finish with the server's final text."""
    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}, 21 C"

    with LoopbackServer(weather_model) as srv:
        client = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="test", timeout=10,
                                    max_retries=0)
        agent = Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather],
                      model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client))
        async with asyncio.timeout(DEADLINE):
            if streamed:
                result = Runner.run_streamed(agent, "What is the weather in Oslo?")
                kinds = [ev.type async for ev in result.stream_events()]
                assert "raw_response_event" in kinds
            else:
                result = await Runner.run(agent, "What is the weather in Oslo?")
        await client.close()
        reqs = srv.requests_to(RESPONSES_PATH)
        assert srv.violations == []
    assert calls == ["Oslo"]
    assert result.final_output == "The weather: sunny in Oslo, 21 C"
    assert [r.status for r in reqs] == [200, 200]
    assert all(bool(r.json.get("stream")) is streamed for r in reqs)
    assert reqs[0].json["instructions"] == "Answer with the tool."
    assert [t["name"] for t in reqs[0].json["tools"]] == ["get_weather"]
    second = reqs[1].json["input"]
    kinds = [i.get("type", "message") for i in second]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert second[3]["call_id"] == second[2]["call_id"]
    assert second[3]["output"] == "sunny in Oslo, 21 C"
    assert json.loads(second[2]["arguments"]) == {"city": "Oslo"}
