"""What the OpenAI SDK wrapper tests share: a scripted tool-using model for the loopback
server (chat completions and Responses), agent loops that build their own history with the
real ``openai`` clients, and a compactor with a real file store and JSONL ledger.

Imported by its unique name (several test folders have a conftest.py)."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compactor import MessageCompactor, SessionStore, content_hash
from compactor.ledger import Ledger, read_records
from compactor.testing import CHAT_PATH, LoopbackServer, RecordedRequest, Reply

AGENT_MODEL = "gpt-4o"
API_KEY = "sk-openai-test-0123456789abcdef"
#: The provider's context window, in provider tokens; the server rejects a request over it.
WINDOW = 6000
#: Output tokens every call reserves.
MAX_TOKENS = 256
#: Model calls of every agent loop (the issue asks for >= 60 tool-using turns).
TURNS = 64
SYSTEM = "You are a careful coding agent working in the repository acme/payments."
TOOLS_CHAT = [
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a file of the repository.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                       "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "run_tests", "description": "Run the test suite, return the failures.",
        "parameters": {"type": "object", "properties": {"target": {"type": "string"}}}}},
]
#: The same tools in the Responses API's flat shape.
TOOLS_RESPONSES = [{"type": "function", **t["function"]} for t in TOOLS_CHAT]
FIRST_PROMPT = "TICKET-100: the payment tests fail; fix them."


@dataclass
class ScriptedModel:
    """The loopback server's responder: every eighth answer is text, the others call
    ``read_file`` (and ``run_tests`` too, in parallel, every fifth); with ``reasoning``,
    every Responses answer starts with a reasoning item."""

    reasoning: bool = False
    _n: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            n = next(self._n)
        thought = f"Step {n}: which file fails next?" if self.reasoning else None
        if n % 8 == 7:
            return Reply(text=f"Step {n}: the tests point at src/billing_{n % 7}.py; "
                         "I will patch it next.", reasoning=thought)
        uses: tuple[tuple[str, dict[str, Any]], ...] = (("read_file", {"path": f"src/mod_{n}.py"}),)
        if n % 5 == 0:
            uses += (("run_tests", {"target": f"tests/test_{n}.py"}),)
        return Reply(text="Let me look.", tool_uses=uses, reasoning=thought)


def next_prompt(t: int) -> str:
    """The user message that follows a text answer at turn ``t``."""
    return f"Continue with step {t}; keep TICKET-{t} in mind."


def tool_output(name: str, arguments: str, k: int) -> str:
    """What a tool returns: ~500 characters naming its target (so 64 turns are several
    times the window)."""
    args = json.loads(arguments or "{}")
    target = args.get("path") or args.get("target")
    return (f"{name} {target}: " + " ".join(
        f"line {j}: def handler_{k}_{j}(request): return charge(request, TICKET-{k}{j})"
        for j in range(6)))


@dataclass
class Harness:
    """A loopback server running the scripted model; a compactor with a real file store
    and a real JSONL ledger under a temporary directory."""

    server: LoopbackServer
    compactor: MessageCompactor
    store: SessionStore
    ledger: Ledger
    ledger_path: Path

    def compaction_records(self) -> list[dict[str, Any]]:
        """The ``compaction`` records of the JSONL ledger (closed first, so all are on disk)."""
        self.ledger.close()
        return [r for r in read_records(self.ledger_path) if r.get("event") == "compaction"]


def make_harness(tmp: Path, *, reasoning: bool = False, **server_kw: Any) -> Harness:
    """The harness (the server started; stop it with ``h.server.stop()``)."""
    server = LoopbackServer(ScriptedModel(reasoning), max_context_tokens=WINDOW,
                            **server_kw).start()
    store = SessionStore(tmp / "store")
    ledger_path = tmp / "ledger" / "ledger.jsonl"
    ledger = Ledger(ledger_path, fsync="never")
    return Harness(server, MessageCompactor(store=store, sink=ledger), store, ledger, ledger_path)


@dataclass
class Run:
    """What an agent loop saw: the history it sent last, whether each call compacted and
    the compaction results (the wrapper's ``last_result`` after each call), the SDK objects
    returned."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    compacted: list[bool] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    returned: list[Any] = field(default_factory=list)


# --------------------------------------------------------------------------- chat completions
def _chat_turn(history: list[dict[str, Any]], text: str | None,
               calls: list[tuple[str, str, str]], t: int) -> None:
    """Append the assistant turn (``calls``: (id, name, arguments)) and what answers it:
    one ``tool`` message per call, else the next user message."""
    turn: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        turn["tool_calls"] = [{"id": i, "type": "function",
                               "function": {"name": n, "arguments": a}} for i, n, a in calls]
    history.append(turn)
    for i, n, a in calls:
        history.append({"role": "tool", "tool_call_id": i, "content": tool_output(n, a, t)})
    if not calls:
        history.append({"role": "user", "content": next_prompt(t)})


def chat_kwargs(history: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(model=AGENT_MODEL, max_completion_tokens=MAX_TOKENS, tools=TOOLS_CHAT,
                messages=history)


def _read_chunks(chunks: list[Any]) -> tuple[str, list[tuple[str, str, str]]]:
    """The text and tool calls of a streamed chat completion, from its chunks."""
    text, calls = "", {}
    for c in chunks:
        for choice in c.choices:
            d = choice.delta
            text += d.content or ""
            for tc in d.tool_calls or []:
                got = calls.setdefault(tc.index, ["", "", ""])
                got[0] = tc.id or got[0]
                got[1] = (tc.function.name if tc.function and tc.function.name else got[1])
                got[2] += tc.function.arguments if tc.function and tc.function.arguments else ""
    return text, [tuple(calls[k]) for k in sorted(calls)]  # type: ignore[misc]


def _read_completion(c: Any) -> tuple[str | None, list[tuple[str, str, str]]]:
    """The text and tool calls of a ``ChatCompletion``."""
    msg = c.choices[0].message
    return msg.content, [(tc.id, tc.function.name, tc.function.arguments)
                         for tc in msg.tool_calls or []]


def _start() -> tuple[Run, list[dict[str, Any]]]:
    return Run(), [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST_PROMPT}]


def _record(run: Run, client: Any, returned: Any) -> None:
    run.returned.append(returned)
    run.results.append(client.last_result)
    run.compacted.append(client.last_result.compacted)


async def chat_loop(client: Any, turns: int = TURNS, *, stream: bool = False) -> Run:
    """An async agent on chat completions: the full, growing history every call."""
    run, history = _start()
    for t in range(turns):
        run.sent = [dict(m) for m in history]
        got = await client.chat.completions.create(stream=stream, **chat_kwargs(history))
        _record(run, client, got)
        text, calls = _read_chunks([c async for c in got]) if stream else _read_completion(got)
        _chat_turn(history, text, calls, t)
    return run


def chat_loop_sync(client: Any, turns: int = TURNS, *, stream: bool = False) -> Run:
    """:func:`chat_loop` for the sync client."""
    run, history = _start()
    for t in range(turns):
        run.sent = [dict(m) for m in history]
        got = client.chat.completions.create(stream=stream, **chat_kwargs(history))
        _record(run, client, got)
        text, calls = _read_chunks(list(got)) if stream else _read_completion(got)
        _chat_turn(history, text, calls, t)
    return run


# --------------------------------------------------------------------------- Responses
def responses_kwargs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(model=AGENT_MODEL, instructions=SYSTEM, max_output_tokens=MAX_TOKENS,
                tools=TOOLS_RESPONSES, input=items)


def _read_output(output: list[Any]) -> tuple[str, list[tuple[str, str, str]]]:
    """The text and function calls (call_id, name, arguments) of a response's output."""
    text, calls = "", []
    for item in output:
        if item.type == "message":
            text += "".join(getattr(c, "text", "") for c in item.content)
        elif item.type == "function_call":
            calls.append((item.call_id, item.name, item.arguments))
    return text, calls


def _final_response(events: list[Any]) -> Any:
    """The response of a stream's ``response.completed`` event."""
    done = [e.response for e in events if e.type == "response.completed"]
    assert len(done) == 1, [e.type for e in events]
    return done[0]


def _responses_turn(items: list[Any], text: str, calls: list[tuple[str, str, str]], t: int,
                    output: list[Any] | None = None) -> None:
    """Append the model's output (``output``: the SDK's own items, else input items the
    agent builds itself) and what answers it: one ``function_call_output`` per call, else
    the next user message."""
    if output is not None:
        items += output
    if text and output is None:
        items.append({"role": "assistant", "content": text})
    for i, n, a in (calls if output is None else ()):
        items.append({"type": "function_call", "call_id": i, "name": n, "arguments": a})
    for i, n, a in calls:
        items.append({"type": "function_call_output", "call_id": i, "output": tool_output(n, a, t)})
    if not calls:
        items.append({"role": "user", "content": next_prompt(t)})


async def responses_loop(client: Any, turns: int = TURNS, *, stream: bool = False) -> Run:
    """An async agent on the Responses API (no server-side state): the full, growing list
    of input items every call, ``instructions`` as the system prompt."""
    run, items = Run(), [{"role": "user", "content": FIRST_PROMPT}]
    for t in range(turns):
        run.sent = [dict(m) for m in items]
        got = await client.responses.create(stream=stream, **responses_kwargs(items))
        _record(run, client, got)
        resp = _final_response([e async for e in got]) if stream else got
        _responses_turn(items, *_read_output(resp.output), t)
    return run


async def reasoning_loop(client: Any, turns: int = TURNS) -> Run:
    """An async agent on a reasoning model without provider-side state (``store=False``,
    encrypted reasoning asked for), extending its input with the SDK's own
    ``response.output`` items, as OpenAI's guide does. ``run.sent`` holds the items as the
    SDK's ``to_dict(mode="json")`` serializes them."""
    run, items = Run(), [{"role": "user", "content": FIRST_PROMPT}]
    for t in range(turns):
        run.sent = [m.to_dict(mode="json") if hasattr(m, "to_dict") else dict(m) for m in items]
        got = await client.responses.create(store=False, include=["reasoning.encrypted_content"],
                                            **responses_kwargs(items))
        _record(run, client, got)
        _responses_turn(items, *_read_output(got.output), t, output=got.output)
    return run


def responses_loop_sync(client: Any, turns: int = TURNS, *, stream: bool = False) -> Run:
    """:func:`responses_loop` for the sync client."""
    run, items = Run(), [{"role": "user", "content": FIRST_PROMPT}]
    for t in range(turns):
        run.sent = [dict(m) for m in items]
        got = client.responses.create(stream=stream, **responses_kwargs(items))
        _record(run, client, got)
        resp = _final_response(list(got)) if stream else got
        _responses_turn(items, *_read_output(resp.output), t)
    return run


def agent_requests(h: Harness, path: str = CHAT_PATH) -> list[RecordedRequest]:
    """The agent's model calls the server received on ``path``."""
    return [r for r in h.server.requests if r.path == path and r.model == AGENT_MODEL]


def check_run(h: Harness, run: Run, session_id: str, path: str) -> None:
    """The guarantees every agent loop must give: 0 violations, every call answered,
    >= 3 compactions, one ledger record per compaction the agent observed, restore == the
    history the agent sent, requests far shorter than that history, and every removed
    message archived (only the compactor's own summaries are not)."""
    assert h.server.violations == [], h.server.violations[:3]
    calls = agent_requests(h, path)
    assert len(calls) == TURNS and all(r.status == 200 for r in calls)
    observed = sum(run.compacted)
    assert observed >= 3
    records = h.compaction_records()
    assert len(records) == observed == h.compactor.session(session_id).compaction_count
    assert all(r["session_id"] == session_id for r in records)
    # what the store restores is the history the agent built and sent, message for message
    assert h.store.restore(session_id) == run.sent
    # the requests stayed short while the history grew, and every removed message is archived
    longest = max(len(r.json.get("messages") or r.json.get("input")) for r in calls)
    assert longest < len(run.sent) // 2, (longest, len(run.sent))
    archived = {content_hash(m) for m in run.sent}
    made = {content_hash(m) for r in run.results if r.compacted for m in r.messages} - archived
    removed = [x for r in records for x in r["removed_hashes"]]
    assert len(removed) >= TURNS
    assert set(removed) - archived <= made   # only the compactor's own summaries are not archived
