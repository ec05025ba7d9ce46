"""What the framework tests share: a scripted tool-using model for the loopback server, the
tool it calls, and the checks on the ledger and the archive after a run.

Imported by its unique name (several test folders have a conftest.py)."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compactor import MessageCompactor, PlanConfig, SessionStore, content_hash
from compactor.ledger import Ledger, read_records
from compactor.testing import CHAT_PATH, MESSAGES_PATH, LoopbackServer, RecordedRequest, Reply

#: Tool-using turns of every agent run (the issue asks for >= 60).
TURNS = 64
#: The provider's context window of these runs, in provider tokens; the server rejects any
#: request over it.
WINDOW = 6000
#: Output tokens each model call reserves.
MAX_TOKENS = 512
SYSTEM = "You are a support agent. Look up every ticket the user names, one at a time."
PROMPT = "Check tickets T-0000 to T-0063 and report their status."
FINAL = "All tickets checked."


def ticket_report(ticket: str) -> str:
    """What the ``lookup`` tool returns: ~700 characters naming the ticket (so 64 turns
    are several times the window)."""
    return (f"Ticket {ticket}: status open, owner ops-{ticket[-2:]}; "
            + "log line with the details of the failure. " * 15)


@dataclass
class ScriptedModel:
    """The loopback server's responder: for the first ``turns`` agent requests, a short
    text and one ``lookup`` call for the next ticket; then the final answer."""

    turns: int = TURNS
    _n: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            n = next(self._n)
        if n >= self.turns:
            return Reply(text=FINAL)
        return Reply(text=f"Looking up ticket T-{n:04d}.",
                     tool_uses=(("lookup", {"ticket": f"T-{n:04d}"}),))


@dataclass
class Harness:
    """A loopback server running the scripted model, and a compactor with a real file
    store and a real JSONL ledger under ``tmp``."""

    server: LoopbackServer
    compactor: MessageCompactor
    store: SessionStore
    ledger: Ledger
    ledger_path: Path
    #: every CompactionResult the compactor returned, in order
    results: list[Any] = field(default_factory=list)

    def agent_requests(self) -> list[RecordedRequest]:
        """The model calls the agent made (Messages API and chat completions)."""
        return [r for r in self.server.requests if r.path in (MESSAGES_PATH, CHAT_PATH)]


def make_harness(tmp: Path, *, clear: bool = False) -> Harness:
    """The harness; ``clear``: the compactor also clears old tool results (placeholders in
    the kept messages, so the adapters must send changed copies of the agent's messages)."""
    server = LoopbackServer(ScriptedModel(), max_context_tokens=WINDOW).start()
    store = SessionStore(tmp / "store")
    ledger_path = tmp / "ledger" / "ledger.jsonl"
    ledger = Ledger(ledger_path, fsync="never")
    # with clearing, the thresholds the runs are sized for are given (at the shipped 0.85 /
    # 0.65 clearing alone keeps ~40 tool turns of placeholders in a request: longer than
    # check_run's half of the history); without it the runs use the shipped defaults
    config = PlanConfig(high_watermark=0.7, low_watermark=0.4, max_summary_tokens=2000,
                        clear_tool_results=True, clear_keep_last=2) if clear else None
    compactor = MessageCompactor(store=store, sink=ledger, config=config)
    h = Harness(server, compactor, store, ledger, ledger_path)
    real = compactor.compact_if_needed

    async def observed(*args: Any, **kwargs: Any) -> Any:   # the real call, its result kept
        r = await real(*args, **kwargs)
        h.results.append(r)
        return r

    compactor.compact_if_needed = observed  # type: ignore[method-assign]
    return h


def check_run(h: Harness, session_id: str, sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks every framework run must pass; returns the ledger's compaction records.

    ``sent``: the full history the framework sent to its model, as our converter turns the
    messages the framework itself produced (collected from its own stream, not from the
    adapter)."""
    assert h.server.violations == [], h.server.violations[:5]
    calls = h.agent_requests()
    assert len(calls) == TURNS + 1 and all(r.status == 200 for r in calls)
    h.ledger.close()
    records = [r for r in read_records(h.ledger_path) if r.get("event") == "compaction"]
    state = h.compactor.session(session_id)
    assert len(records) >= 3
    assert len(records) == state.compaction_count
    assert all(r["session_id"] == session_id for r in records)
    # the longest request is far shorter than the history the framework accumulated
    longest = max(len(r.json["messages"]) for r in calls)
    assert longest < len(sent) // 2, (longest, len(sent))
    restored = h.store.restore(session_id)
    assert restored == sent
    assert len(records) == sum(r.compacted for r in h.results)
    # every message a compaction removed is in the archive, unless the compactor made it
    # (a summary, a cleared copy of a tool result) -- never one of the framework's
    archived = {content_hash(m) for m in restored}
    made = {content_hash(m) for r in h.results if r.compacted for m in r.messages} - archived
    for r in records:
        assert set(r["removed_hashes"]) - archived <= made
    assert sum(len(r["removed_hashes"]) for r in records) >= TURNS
    return records


#: Every placeholder of a cleared tool result starts with this (compactor._clearing).
CLEARED = "[tool result cleared by the context compactor"


def cleared_requests(h: Harness) -> int:
    """How many of the agent's requests carried a cleared tool result."""
    return sum(CLEARED in str(r.json["messages"]) for r in h.agent_requests())
