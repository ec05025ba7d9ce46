"""A real Pydantic AI ``Agent`` with ``CompactingHistoryProcessor``, its model talking HTTP
to the loopback server, runs 64 tool-using turns in a 6k window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")
pytest.importorskip("anthropic")
pytest.importorskip("openai")

from pydantic_ai import Agent, UsageLimits  # noqa: E402
from pydantic_ai.messages import ModelRequest, ModelResponse  # noqa: E402
from pydantic_ai.models.anthropic import AnthropicModel  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.anthropic import AnthropicProvider  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

from compactor.adapters.pydantic_ai import (CompactingHistoryProcessor,  # noqa: E402
                                            from_pydantic_ai)

from frameworks_support import (FINAL, MAX_TOKENS, PROMPT, SYSTEM, WINDOW, Harness,  # noqa: E402
                                check_run, cleared_requests, make_harness, ticket_report)

pytestmark = pytest.mark.timeout(120)


def _agent(model: Any, processor: CompactingHistoryProcessor) -> Agent:
    """The agent under test: the processor as a history processor (``capabilities`` with
    ``ProcessHistory`` in pydantic-ai 2, ``history_processors`` in 1.x)."""
    try:
        from pydantic_ai.capabilities import ProcessHistory
        kw: dict[str, Any] = {"capabilities": [ProcessHistory(processor)]}
    except ImportError:   # pydantic-ai 1.x
        kw = {"history_processors": [processor]}
    agent = Agent(model, system_prompt=SYSTEM, model_settings={"max_tokens": MAX_TOKENS}, **kw)

    @agent.tool_plain
    def lookup(ticket: str) -> str:
        """Look up a support ticket by its id (e.g. T-0001)."""
        return ticket_report(ticket)

    return agent


async def _run(agent: Agent) -> tuple[list[Any], Any]:
    """Run the agent; the messages it produced (its own nodes' request and response
    objects, before any history processing) and its output."""
    produced: list[Any] = []
    async with agent.iter(PROMPT, usage_limits=UsageLimits(request_limit=None)) as run:
        async for node in run:
            if Agent.is_model_request_node(node):
                produced.append(node.request)
            elif Agent.is_call_tools_node(node):
                produced.append(node.model_response)
    assert run.result is not None
    return produced, run.result.output


async def _check(h: Harness, sid: str, produced: list[Any], output: Any) -> None:
    assert output == FINAL
    assert isinstance(produced[0], ModelRequest) and isinstance(produced[-1], ModelResponse)
    sent, system = from_pydantic_ai(produced[:-1])   # the last response was never sent
    assert system == SYSTEM
    check_run(h, sid, sent)


@pytest.mark.parametrize("clear", [False, True], ids=["summaries", "clearing"])
async def test_anthropic_model_agent_compacts_with_valid_requests_ledger_and_archive(
        tmp_path: Path, clear: bool):
    """AnthropicModel over HTTP, 64 tool turns: >= 3 compactions, 0 violations, every
    compaction in the JSONL ledger, restore == the history the agent sent, and every
    request still carries the agent's system prompt; with tool-result clearing on, the
    cleared returns go out as copies of the agent's requests."""
    h = make_harness(tmp_path, clear=clear)
    try:
        provider = AnthropicProvider(base_url=h.server.url, api_key="test-key")
        model = AnthropicModel("claude-sonnet-4-6", provider=provider)
        proc = CompactingHistoryProcessor(h.compactor, session_id="pa-anthropic", window=WINDOW,
                                          max_tokens=MAX_TOKENS)
        produced, output = await _run(_agent(model, proc))
    finally:
        h.server.stop()
    await _check(h, "pa-anthropic", produced, output)
    calls = h.agent_requests()
    assert all(SYSTEM in str(r.json.get("system")) for r in calls)
    first = calls[-1].json["messages"][0]["content"]
    text = first if isinstance(first, str) else " ".join(b.get("text", "") for b in first)
    assert text.startswith("<conversation_summary>")
    assert (cleared_requests(h) > 0) is clear
    assert proc.calibrator.state("claude-sonnet-4-6").observations >= 60


async def test_openai_chat_model_agent_compacts_with_valid_requests_ledger_and_archive(
        tmp_path: Path):
    """OpenAIChatModel over HTTP (chat completions), 64 tool turns: the same guarantees."""
    h = make_harness(tmp_path)
    try:
        model = OpenAIChatModel("gpt-4o", provider=OpenAIProvider(base_url=f"{h.server.url}/v1",
                                                                  api_key="sk-test"))
        proc = CompactingHistoryProcessor(h.compactor, session_id="pa-openai", window=WINDOW,
                                          max_tokens=MAX_TOKENS)
        produced, output = await _run(_agent(model, proc))
    finally:
        h.server.stop()
    await _check(h, "pa-openai", produced, output)
    calls = h.agent_requests()
    assert all(r.json["messages"][0]["role"] == "system"
               and SYSTEM in str(r.json["messages"][0]["content"]) for r in calls)
