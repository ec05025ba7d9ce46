"""Scripted tool-using agents on the real ``anthropic`` and ``openai`` SDKs (used by the proxy
tests and by ``benchmarks/bench_proxy.py``).

Each agent keeps its full history, as an agent that never heard of compaction does, and
sends it every turn; the scripted model (:func:`tool_model`) answers every call with a
tool call, and the agent appends the tool's result. The bytes of every request the client
sent are captured (an httpx request hook), so a test can compare what the client sent
with what the proxy archived.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai

from compactor.testing import RecordedRequest, Reply

ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_MODEL = "gpt-4o"
TOOLS_ANTHROPIC = [{"name": "search", "description": "search the flight database",
                    "input_schema": {"type": "object",
                                     "properties": {"q": {"type": "string"}}}}]
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "search", "description": "search the flight database",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


def tool_model(request: RecordedRequest) -> Reply:
    """The scripted model: a short text and one ``search`` tool call, every time."""
    return Reply(text="Let me look that up.", tool_uses=(("search", {"q": "next leg"}),))


def tool_result(session: int, turn: int, size: int) -> str:
    """A tool result of about ``size`` characters, unique to the session and turn."""
    head = f"session {session} turn {turn}: flight AB{session:03d}{turn:03d} departs gate {turn % 40}. "
    return (head * (size // len(head) + 1))[:size]


@dataclass
class AgentRun:
    """What one agent did: its final history, the request bodies its client sent, the
    latency of each call (seconds) and whether it was streamed."""

    session: int
    kind: str
    stream: bool
    history: list[dict[str, Any]]
    sent: list[bytes] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def _hooked(sdk: Any, sent: list[bytes]) -> Any:
    """The SDK's own default HTTP client (its httpx flavour), recording request bodies."""
    async def hook(request: Any) -> None:
        if request.url.path.endswith(("/messages", "/chat/completions")):
            sent.append(request.content)

    return sdk.DefaultAsyncHttpxClient(event_hooks={"request": [hook]}, timeout=60,
                                       trust_env=False)


async def anthropic_agent(base_url: str, api_key: str, session: int, turns: int, *,
                          stream: bool, result_chars: int = 1000,
                          headers: dict[str, str] | None = None) -> AgentRun:
    """``turns`` tool-using turns on ``anthropic.AsyncAnthropic`` (no SDK retries)."""
    run = AgentRun(session, "anthropic", stream,
                   [{"role": "user", "content": f"Session {session}: plan my trip, leg by leg."}])
    http = _hooked(anthropic, run.sent)
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=0,
                                      http_client=http, default_headers=headers or {})
    system = f"You are travel agent #{session}. Use the search tool."
    try:
        for turn in range(turns):
            kw = dict(model=ANTHROPIC_MODEL, max_tokens=256, system=system,
                      tools=TOOLS_ANTHROPIC, messages=run.history)
            t0 = time.perf_counter()
            if stream:
                async with client.messages.stream(**kw) as s:
                    msg = await s.get_final_message()
            else:
                msg = await client.messages.create(**kw)
            run.latencies.append(time.perf_counter() - t0)
            blocks = [b.model_dump(mode="json", exclude_unset=True) for b in msg.content]
            run.history.append({"role": "assistant", "content": blocks})
            uses = [b for b in blocks if b["type"] == "tool_use"]
            run.history.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": u["id"],
                 "content": tool_result(session, turn, result_chars)} for u in uses]})
    finally:
        await client.close()
        await http.aclose()
    return run


async def openai_agent(base_url: str, api_key: str, session: int, turns: int, *,
                       stream: bool, result_chars: int = 1000,
                       headers: dict[str, str] | None = None) -> AgentRun:
    """``turns`` tool-using turns on ``openai.AsyncOpenAI`` (no SDK retries)."""
    run = AgentRun(session, "openai", stream, [
        {"role": "system", "content": f"You are travel agent #{session}. Use the search tool."},
        {"role": "user", "content": f"Session {session}: plan my trip, leg by leg."}])
    http = _hooked(openai, run.sent)
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                http_client=http, default_headers=headers or {})
    try:
        for turn in range(turns):
            kw = dict(model=OPENAI_MODEL, max_tokens=256, tools=TOOLS_OPENAI,
                      messages=run.history)
            t0 = time.perf_counter()
            if stream:
                text, calls = "", {}
                got = await client.chat.completions.create(stream=True, **kw)
                async for chunk in got:
                    if not chunk.choices:
                        continue
                    d = chunk.choices[0].delta
                    text += d.content or ""
                    for c in d.tool_calls or []:
                        slot = calls.setdefault(c.index, {"id": "", "name": "", "args": ""})
                        slot["id"] = c.id or slot["id"]
                        if c.function is not None:
                            slot["name"] += c.function.name or ""
                            slot["args"] += c.function.arguments or ""
                tool_calls = [{"id": c["id"], "type": "function",
                               "function": {"name": c["name"], "arguments": c["args"]}}
                              for _, c in sorted(calls.items())]
            else:
                resp = await client.chat.completions.create(**kw)
                m = resp.choices[0].message
                text = m.content or ""
                tool_calls = [{"id": c.id, "type": "function",
                               "function": {"name": c.function.name,
                                            "arguments": c.function.arguments}}
                              for c in m.tool_calls or []]
            run.latencies.append(time.perf_counter() - t0)
            run.history.append({"role": "assistant", "content": text or None,
                                "tool_calls": tool_calls})
            for c in tool_calls:
                run.history.append({"role": "tool", "tool_call_id": c["id"],
                                    "content": tool_result(session, turn, result_chars)})
    finally:
        await client.close()
        await http.aclose()
    return run


def canonical(obj: Any) -> str:
    """Sorted-key compact JSON (how two histories are compared byte for byte)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
