"""Fixtures for the adapter tests: a loopback provider server whose model answers like a
small coding agent (tool calls, then text) and whose summarizer model answers with a
short summary; the real ``anthropic`` SDK pointed at it; an agent loop driver."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import anthropic
import pytest

from compactor import MemorySink, MessageCompactor, PlanConfig, TiktokenCounter
from compactor.adapters import RetryPolicy, resilient_compactor
from compactor.adapters.anthropic_sdk import AnthropicSummarizer, CompactingAnthropic
from compactor.testing import LoopbackServer, RecordedRequest, Reply

AGENT_MODEL = "claude-sonnet-4-6"
SUMMARY_MODEL = "claude-haiku-4-5"
API_KEY = "sk-ant-test-0123456789abcdef"
WINDOW = 6000          # provider tokens
MAX_TOKENS = 256
SYSTEM = "You are a careful coding agent working in the repository acme/payments."
TOOLS = [
    {"name": "read_file", "description": "Read a file of the repository.",
     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}},
                      "required": ["path"]}},
    {"name": "run_tests", "description": "Run the test suite, return the failures.",
     "input_schema": {"type": "object", "properties": {"target": {"type": "string"}}}},
]
#: The thresholds the agent loops are sized for (28 turns at WINDOW compact several times),
#: given explicitly: an adapter test must not depend on the shipped defaults.
PLAN = PlanConfig(high_watermark=0.7, low_watermark=0.4, max_summary_tokens=400)
#: Small, fast retries: tests must not sleep for long.
FAST_RETRY = RetryPolicy(attempts=3, deadline_s=10.0, backoff_s=0.005, backoff_max_s=0.02,
                         retry_after_max_s=0.2)


def _has_tool_result(body: Any) -> bool:
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content")
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


def agent_responder(req: RecordedRequest) -> Reply | str:
    """The scripted models: the summarizer quotes a few identifiers from its prompt; the
    agent calls tools (two in parallel every third call) until it sees their results,
    then answers in text."""
    body = req.json
    if req.model == SUMMARY_MODEL:
        prompt = str(body["messages"][-1]["content"])
        ids = list(dict.fromkeys(re.findall(r"\bsrc/\w+\.py\b|\bTICKET-\d+\b", prompt)))[:6]
        return ("Goals: fix the failing payment tests. Decisions: patched the retry logic. "
                f"Open tasks: rerun the suite. Identifiers: {', '.join(ids) or 'none'}.")
    if _has_tool_result(body):
        return Reply(text=f"Step {req.seq}: the tests point at src/billing_{req.seq % 7}.py; "
                     "I will patch it next.")
    uses: tuple[tuple[str, dict[str, Any]], ...] = (("read_file", {"path": f"src/mod_{req.seq}.py"}),)
    if req.seq % 3 == 0:
        uses += (("run_tests", {"target": f"tests/test_{req.seq}.py"}),)
    return Reply(text="Let me look.", tool_uses=uses)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A loopback server with the agent responder and a context limit of ``WINDOW``."""
    with LoopbackServer(agent_responder, max_context_tokens=WINDOW) as s:
        yield s


@pytest.fixture
async def raw_client(server: LoopbackServer):
    """The real SDK on the loopback server; its own retries stay on (the default 2)."""
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key=API_KEY, timeout=5.0)
    yield client
    await client.close()


@dataclass
class Harness:
    client: CompactingAnthropic
    sink: MemorySink
    compactor: MessageCompactor
    summarizer: AnthropicSummarizer


@pytest.fixture
def harness(raw_client, tiktoken_counter: TiktokenCounter) -> Harness:
    """The wrapper with an LLM summarizer (fast retries, 0.3 s timeout) falling back to
    the offline summarizer, everything reported to a memory sink."""
    sink = MemorySink()
    summ = AnthropicSummarizer(raw_client, model=SUMMARY_MODEL, max_tokens=400,
                               timeout_s=0.3, retry=FAST_RETRY, sink=sink)
    comp = resilient_compactor(summ, sink=sink, counter=tiktoken_counter, config=PLAN)
    return Harness(CompactingAnthropic(raw_client, comp, window=WINDOW, session_id="run"),
                   sink, comp, summ)


@dataclass
class LoopStats:
    turns: int = 0
    responses: list[Any] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def _tool_output(name: str, inp: dict[str, Any], k: int) -> str:
    target = inp.get("path") or inp.get("target")
    return (f"{name} {target}: " + " ".join(
        f"line {j}: def handler_{k}_{j}(request): return charge(request, TICKET-{k}{j})"
        for j in range(6)))


async def run_agent_loop(client: Any, turns: int, *, stream_every: int = 0) -> LoopStats:
    """Drive ``turns`` model calls the way an agent does: the full, growing history each
    call; tool calls answered with tool results in the next user message."""
    stats = LoopStats()
    history = stats.history
    history.append({"role": "user", "content": "TICKET-100: the payment tests fail; fix them."})
    for t in range(turns):
        kwargs = dict(model=AGENT_MODEL, max_tokens=MAX_TOKENS, system=SYSTEM, tools=TOOLS,
                      messages=history)
        if stream_every and t % stream_every == stream_every - 1:
            async with client.messages.stream(**kwargs) as stream:
                resp = await stream.get_final_message()
        else:
            resp = await client.messages.create(**kwargs)
        stats.responses.append(resp)
        stats.turns += 1
        history.append({"role": "assistant",
                        "content": [b.model_dump(exclude_none=True) for b in resp.content]})
        uses = [b for b in resp.content if b.type == "tool_use"]
        if uses:
            history.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": u.id,
                 "content": _tool_output(u.name, dict(u.input), t)} for u in uses]})
        else:
            history.append({"role": "user", "content": f"Continue with step {t}; keep TICKET-{t} in mind."})
    return stats
