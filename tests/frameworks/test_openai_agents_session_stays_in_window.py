"""The real Agents SDK ``Runner`` with ``session=CompactingSession(SQLiteSession(...))``, its
model talking HTTP to the loopback server (Responses API and chat completions), runs 64
tool-using turns in a 6k window: in one run (the session's ``call_model_input_filter``) and
as a conversation of 64 short runs (``get_items`` alone)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")
pytest.importorskip("openai")

import agents  # noqa: E402
from agents import RunConfig, Runner, SQLiteSession  # noqa: E402

from compactor import content_hash  # noqa: E402
from compactor.adapters.openai_agents import CompactingSession  # noqa: E402
from compactor.testing import RESPONSES_PATH, LoopbackServer  # noqa: E402

from frameworks_support import (FINAL, MAX_TOKENS, PROMPT, SYSTEM, TURNS, WINDOW,  # noqa: E402
                                Harness, make_harness)
from openai_agents_support import (OneLookupPerQuestion, chat_model,  # noqa: E402
                                   ledger_compactions, make_agent, model_requests,
                                   request_items, responses_model)

pytestmark = pytest.mark.timeout(120)
agents.set_tracing_disabled(True)

SUMMARY_OPEN = "<conversation_summary>"


def _is_summary(item: Any) -> bool:
    """Whether an item (as stored or as sent on either API) is our summary: a
    ``developer`` message whose text starts with the summary tag."""
    content = item.get("content")
    text = content[0].get("text", "") if isinstance(content, list) and content else content
    return item.get("role") == "developer" and str(text).startswith(SUMMARY_OPEN)


def _check_archive(h: Harness, sid: str, stored: list[Any], records: list[dict[str, Any]]
                   ) -> None:
    """The store restores exactly ``stored``, and every item a compaction removed is in the
    archive unless the compactor made it (a summary)."""
    restored = h.store.restore(sid)
    assert restored == stored
    archived = {content_hash(m) for m in restored}
    made = {content_hash(m) for r in h.results if r.compacted for m in r.messages} - archived
    for r in records:
        assert set(r["removed_hashes"]) - archived <= made
    assert sum(len(r["removed_hashes"]) for r in records) >= TURNS


def _session(h: Harness, tmp: Path, sid: str, model: Any, **settings: Any
             ) -> tuple[agents.Agent, SQLiteSession, CompactingSession]:
    """The agent on ``model`` (with ``settings``), its underlying SQLiteSession ``sid`` (a
    file under ``tmp``) and the CompactingSession over it (the harness's compactor, the 6k
    window)."""
    agent = make_agent(model, **settings)
    raw = SQLiteSession(sid, str(tmp / "sessions.db"))
    return agent, raw, CompactingSession(raw, h.compactor, agent=agent, window=WINDOW,
                                         max_tokens=MAX_TOKENS)


def _with_server(tmp: Path, responder: Any = None) -> Harness:
    """The shared harness (file store, JSONL ledger), its server replaced by one running
    ``responder`` when given."""
    h = make_harness(tmp)
    if responder is not None:
        h.server.stop()
        h.server = LoopbackServer(responder, max_context_tokens=WINDOW).start()
    return h


@pytest.mark.parametrize("api", ["responses", "responses-streamed", "chat"])
async def test_one_run_of_64_tool_turns_compacts_every_model_call(tmp_path: Path, api: str):
    """One ``Runner.run`` (or ``run_streamed``) of 64 tool turns with the session's filter
    and hooks: every request valid and inside the window, >= 3 compactions each in the JSONL
    ledger, the underlying SQLiteSession holds every raw item, the store restores exactly
    the items the Runner stored and sent, and every request is the summary plus a tail of
    those items."""
    h = make_harness(tmp_path)
    sid = f"oa-{api}"
    try:
        model = chat_model(h.server.url) if api == "chat" else responses_model(h.server.url)
        agent, raw, session = _session(h, tmp_path, sid, model)
        kwargs: dict[str, Any] = dict(
            session=session, max_turns=TURNS + 1, hooks=session.hooks,
            run_config=RunConfig(call_model_input_filter=session.call_model_input_filter))
        if api == "responses-streamed":
            result = Runner.run_streamed(agent, PROMPT, **kwargs)
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, PROMPT, **kwargs)
    finally:
        h.server.stop()
    assert result.final_output == FINAL
    if api == "responses-streamed":
        assert all(c.json.get("stream") is True for c in model_requests(h))
    assert h.server.violations == []
    calls = model_requests(h)
    assert len(calls) == TURNS + 1 and all(c.status == 200 for c in calls)
    # the underlying session: the prompt, 64 x (message, function_call, output), the answer
    stored = await raw.get_items()
    types = [i.get("type", "message") for i in stored]
    assert types == ["message", *["message", "function_call", "function_call_output"] * TURNS,
                     "message"]
    assert not any(_is_summary(i) for i in stored)
    records = ledger_compactions(h, sid)
    assert len(records) >= 3
    assert {r["format"] for r in records} == {"responses"}
    # the last answer was stored but never sent: everything before it was
    _check_archive(h, sid, stored[:-1], records)
    longest = max(len(request_items(c)) for c in calls)
    assert longest < len(stored) // 2, (longest, len(stored))
    last = request_items(calls[-1])
    if api != "chat":
        assert calls[-1].json["instructions"] == SYSTEM
        assert _is_summary(last[0])
        # what every request sent (after our summary, once there is one) is a run of the
        # archived items, each exactly as the Runner stored it
        restored = h.store.restore(sid)
        for c in calls:
            sent = request_items(c)
            kept = sent[1:] if _is_summary(sent[0]) else sent
            assert any(kept == restored[k:k + len(kept)] for k in range(len(restored)))
    else:
        assert last[0] == {"role": "system", "content": SYSTEM} and _is_summary(last[1])
    assert session.calibrator.state("gpt-4o").observations >= TURNS


def test_run_sync_compacts_the_same_way(tmp_path: Path):
    """``Runner.run_sync`` (no loop running in the caller) of 64 tool turns with the filter:
    valid requests, >= 3 compactions in the ledger, the archive equal to the stored items."""
    h = make_harness(tmp_path)
    sid = "oa-sync"
    try:
        agent, raw, session = _session(h, tmp_path, sid, responses_model(h.server.url))
        result = Runner.run_sync(
            agent, PROMPT, session=session, max_turns=TURNS + 1, hooks=session.hooks,
            run_config=RunConfig(call_model_input_filter=session.call_model_input_filter))
    finally:
        h.server.stop()
    assert result.final_output == FINAL
    assert h.server.violations == [] and len(model_requests(h)) == TURNS + 1
    records = ledger_compactions(h, sid)
    assert len(records) >= 3
    stored = asyncio.run(raw.get_items())
    _check_archive(h, sid, stored[:-1], records)


async def test_reasoning_items_stay_with_their_turn(tmp_path: Path):
    """With a reasoning item before every tool call (stateless: ``store=False``, encrypted
    content included), each request the compacted runs send has every reasoning item right
    before its turn's message and function call, and every function_call_output after its
    call."""
    h = _with_server(tmp_path, OneLookupPerQuestion(reasoning=True))
    sid = "oa-reasoning"
    try:
        agent, raw, session = _session(h, tmp_path, sid, responses_model(h.server.url),
                                       store=False,
                                       response_include=["reasoning.encrypted_content"])
        config = RunConfig(call_model_input_filter=session.call_model_input_filter)
        for q in range(40):
            await Runner.run(agent, f"What is the status of ticket T-{q:04d}?", session=session,
                             hooks=session.hooks, run_config=config)
    finally:
        h.server.stop()
    assert h.server.violations == []
    stored = await raw.get_items()
    assert sum(i.get("type") == "reasoning" for i in stored) == 40
    assert all(i.get("encrypted_content") for i in stored if i.get("type") == "reasoning")
    assert len(ledger_compactions(h, sid)) >= 3
    sent_reasoning = 0
    for c in model_requests(h):
        items = request_items(c)
        called = set()
        for k, it in enumerate(items):
            if it.get("type") == "reasoning":
                sent_reasoning += 1
                assert [x.get("type") for x in items[k + 1:k + 3]] == ["message", "function_call"]
            elif it.get("type") == "function_call":
                called.add(it["call_id"])
            elif it.get("type") == "function_call_output":
                assert it["call_id"] in called
    assert sent_reasoning > 0
    await session.get_items()           # the next run's read: the last run's items archived
    assert h.store.restore(sid) == stored


async def test_a_conversation_of_64_short_runs_compacts_on_get_items(tmp_path: Path):
    """64 runs (one question, one lookup, one answer each) without the filter: the session's
    get_items compacts at the start of runs, every request is valid, each compaction is in
    the ledger, the next read starts with the summary, and the store restores every item of
    the underlying session."""
    h = _with_server(tmp_path, OneLookupPerQuestion())
    sid = "oa-conversation"
    try:
        agent, raw, session = _session(h, tmp_path, sid, responses_model(h.server.url))
        for q in range(TURNS):
            r = await Runner.run(agent, f"What is the status of ticket T-{q:04d}?",
                                 session=session, hooks=session.hooks)
            assert r.final_output == "Done: the ticket is open."
    finally:
        h.server.stop()
    assert h.server.violations == []
    calls = model_requests(h)
    assert len(calls) == 2 * TURNS and all(c.path == RESPONSES_PATH for c in calls)
    view = await session.get_items()
    stored = await raw.get_items()
    assert len(stored) == 5 * TURNS      # question, message, call, output, answer
    assert _is_summary(view[0]) and view[1:] == stored[len(stored) - len(view) + 1:]
    records = ledger_compactions(h, sid)
    assert len(records) >= 3
    _check_archive(h, sid, stored, records)
    assert max(len(request_items(c)) for c in calls) < len(stored) // 2


async def test_a_session_settings_limit_bounds_each_runs_history_on_unit_boundaries(
        tmp_path: Path):
    """With ``SessionSettings(limit=7)`` the Runner reads at most 7 items per run through
    ``get_items(limit=7)``, cut where a unit starts (here: the previous run's answer, then
    the last whole run), and every request is valid."""
    from agents import SessionSettings

    config = RunConfig(session_settings=SessionSettings(limit=7))
    h = _with_server(tmp_path, OneLookupPerQuestion())
    try:
        agent, raw, session = _session(h, tmp_path, "oa-limit", responses_model(h.server.url))
        for q in range(12):
            await Runner.run(agent, f"What is T-{q:04d}?", session=session, run_config=config)
    finally:
        h.server.stop()
    assert h.server.violations == []
    calls = model_requests(h)
    assert len(calls) == 24 and all(c.status == 200 for c in calls)
    stored = await raw.get_items()
    assert len(stored) == 5 * 12      # question, message, call, output, answer per run
    for k in range(2, 12):            # run k's first call: 6 stored items, then its question
        sent = request_items(calls[2 * k])
        assert [i.get("call_id") for i in sent[:-1]] \
            == [i.get("call_id") for i in stored[5 * k - 6:5 * k]]
        assert sent[0]["role"] == "assistant" and sent[1]["role"] == "user"
