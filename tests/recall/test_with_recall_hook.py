"""The driver hook: after a compaction, archived spans relevant to the newest user turn
are sent with the request, within the window, without touching the session's history."""

from __future__ import annotations

from compactor import HeuristicCounter, MessageCompactor, SessionStore
from compactor._format import Format
from compactor._recall import RECALL_OPEN, with_recall
from compactor._store import content_hash
from compactor.testing._rules import anthropic_problems

from conftest import REGION_ORDINAL, fact_history


async def _compacted(store, question):
    c = MessageCompactor(store=store, window=1500, counter=HeuristicCounter())
    h = fact_history(40) + [{"role": "user", "content": question}]
    r = await c.compact_if_needed(h, session_id="s")
    assert r.compacted
    return c, h, r


async def test_hook_recalls_an_evicted_fact_within_the_window(tmp_path):
    """The fact stated at ordinal 6, evicted by the compaction, comes back in the request;
    nothing recalled is in the compacted context verbatim; the request fits the window."""
    store = SessionStore(tmp_path / "store")
    c, h, r = await _compacted(store, "Remind me: which region is the staging database in?")
    in_context = {content_hash(m) for m in r.messages}
    assert content_hash(h[REGION_ORDINAL]) not in in_context
    rr = await with_recall(c, r, session_id="s")
    assert REGION_ORDINAL in rr.block.ordinals and "eu-north-5" in rr.block.text
    hashes = store.branch_hashes("s")
    assert not {o for o in rr.block.ordinals if hashes[o] in in_context}
    assert c.count_request(rr.messages, fmt=Format.ANTHROPIC) <= r.window
    assert rr.block.tokens <= 0.1 * r.window
    assert anthropic_problems(rr.messages) == []
    assert rr.messages[-1]["content"][-1]["text"].startswith(RECALL_OPEN)


async def test_continuing_from_the_result_is_not_a_rewrite(tmp_path):
    """The caller continues from ``result.messages`` (the block was only sent): the next
    call extends the session's single branch, no fork, the block never archived."""
    store = SessionStore(tmp_path / "store")
    c, h, r = await _compacted(store, "which region is the staging database in?")
    rr = await with_recall(c, r, session_id="s")
    assert rr.block
    nxt = list(r.messages) + [{"role": "assistant", "content": [{"type": "text",
                                                                  "text": "eu-north-5."}]},
                              {"role": "user", "content": "Thanks. And the merchant id?"}]
    await c.compact_if_needed(nxt, session_id="s")
    assert len(store.branches("s")) == 1
    assert len(store.restore("s")) == len(h) + 2
    assert not any(RECALL_OPEN in str(m.get("content")) for m in store.restore("s"))


async def test_no_store_or_no_share_sends_the_result_as_is(tmp_path):
    """Without a store, or with a share of 0, the result's messages are sent unchanged."""
    c = MessageCompactor(window=1500, counter=HeuristicCounter())
    h = fact_history(40) + [{"role": "user", "content": "which region is staging in?"}]
    r = await c.compact_if_needed(h, session_id="s")
    rr = await with_recall(c, r, session_id="s")
    assert not rr.block and rr.messages == list(r.messages)
    store = SessionStore(tmp_path / "store")
    c2, _, r2 = await _compacted(store, "which region is staging in?")
    rr2 = await with_recall(c2, r2, session_id="s", share=0.0)
    assert not rr2.block and rr2.messages == list(r2.messages)


async def test_driver_knowledge_gives_the_same_block_without_reading_the_archive(tmp_path):
    """Given the session state's chain ids and view (what the driver knows), the hook reads
    no archive (the index is at that tip) and recalls exactly what the default, which
    hashes the context and reads the archive, recalls."""
    store = SessionStore(tmp_path / "store")
    c, h, r = await _compacted(store, "Remind me: which region is the staging database in?")
    default = await with_recall(c, r, session_id="s")
    s = c.session("s")
    in_view = {o for o, hh in s.view if o is not None and s.branch[o] == hh}
    reads = []
    real = store.records
    store.records = lambda sid: (reads.append(sid), real(sid))[1]
    try:
        rr = await with_recall(c, r, session_id="s", chains=list(s.chains),
                               exclude_ordinals=in_view)
    finally:
        del store.records
    assert reads == []
    assert rr.block == default.block and rr.messages == default.messages


async def test_an_unusable_index_never_fails_the_call(tmp_path, monkeypatch, caplog):
    """When the index raises a SQLite error (locked past its timeout, unreadable file),
    the hook sends the result as it is and logs one warning."""
    import sqlite3

    from compactor._recall import RecallIndex

    store = SessionStore(tmp_path / "store")
    c, h, r = await _compacted(store, "which region is the staging database in?")

    def locked(*a, **k):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(RecallIndex, "update", locked)
    with caplog.at_level("WARNING", logger="compactor"):
        rr = await with_recall(c, r, session_id="s")
    assert not rr.block and rr.messages == list(r.messages)
    assert any("recall skipped" in m for m in caplog.messages)


async def test_a_cleared_tool_result_is_recalled_in_full(tmp_path):
    """A tool result that clearing replaced by a placeholder is not in the context
    verbatim, so a question about it recalls the original result with its call."""
    import dataclasses

    from compactor import PlanConfig

    if "clear_tool_results" not in {f.name for f in dataclasses.fields(PlanConfig)}:
        import pytest
        pytest.skip("PlanConfig has no tool-result clearing")
    h = [{"role": "user", "content": "Audit the retry settings of every service."}]
    for k in range(12):
        note = ("The retry budget is seventeen attempts, as Priya decided in the review."
                if k == 1 else f"Service {k} uses the default settings. " * 3)
        h += [{"role": "assistant", "content": [
                  {"type": "tool_use", "id": f"toolu_r{k:02d}", "name": "read_config",
                   "input": {"service": f"svc{k}"}}]},
              {"role": "user", "content": [
                  {"type": "tool_result", "tool_use_id": f"toolu_r{k:02d}",
                   "content": note + "\n" + "setting: default value\n" * 60}]}]
    h += [{"role": "assistant", "content": [{"type": "text", "text": "Audit done."}]},
          {"role": "user", "content": "How many retry attempts did Priya decide on?"}]
    store = SessionStore(tmp_path / "store")
    c = MessageCompactor(store=store, window=4000, counter=HeuristicCounter(),
                         config=PlanConfig(clear_tool_results=True))
    r = await c.compact_if_needed(h, session_id="s")
    assert r.compacted
    assert "seventeen" not in str(r.messages)          # cleared (or summarized) away
    rr = await with_recall(c, r, session_id="s")
    assert {3, 4} <= set(rr.block.ordinals)            # the call (3) and its result (4)
    assert "seventeen attempts" in rr.block.text and "id=toolu_r01" in rr.block.text
    assert anthropic_problems(rr.messages) == []
