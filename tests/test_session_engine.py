"""The content-addressed session engine: a message is its content, so restore gives back
exactly the distinct history sent -- under JSON round-trips, restarts, concurrent tasks,
several processes, look-alike ids and agents that rewrite their history."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders import a_calls, a_text, a_user, anthropic_session, o_calls
from compactor import ConfigError, HeuristicCounter, MemorySink, MessageCompactor, SessionStore
from compactor._session import HistoryRewriteError
from compactor._store import canonical_json
from procio import LineReader

ROOT = Path(__file__).resolve().parent.parent


def canon(msgs):
    return [canonical_json(m) for m in msgs]


def turn(t: int) -> list[dict]:
    """Five messages an agent appends in one step (a text answer, a question, a tool loop)."""
    call, res = a_calls("grep", "read_file")
    return [a_text(f"answer {t} " * 20), a_user(f"question {t} ORD-{t:05d}"), call, res,
            a_user(f"more {t}")]


def roundtrip(msgs):
    return json.loads(json.dumps(msgs))


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (lock files left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def script(steps: int) -> tuple[list[dict], list[list[dict]]]:
    """An agent's session: its first messages and what it appends at each step."""
    return anthropic_session(6), [turn(t) for t in range(steps)]


async def drive(comp, *, steps: int, sid: str = "s", rebuild=lambda h: h, follow_result: bool,
                restart=None, plan=None):
    """An agent loop: ``steps`` calls; the history is passed through ``rebuild`` each call;
    it continues from the result (``follow_result``) or from its own full history.
    Returns (the distinct history sent, compactions, the compactor at the end)."""
    first, steps_new = plan or script(steps)
    sent = list(first)
    history = list(sent)
    compactions = 0
    for t in range(steps):
        if restart is not None and t == steps // 2:
            comp = restart()
        r = await comp.compact_if_needed(rebuild(history), session_id=sid)
        compactions += r.compacted
        new = steps_new[t]
        sent += new
        history = (list(r.messages) if follow_result else history) + new
    r = await comp.compact_if_needed(rebuild(history), session_id=sid)
    return sent, compactions + r.compacted, comp


@pytest.mark.parametrize("follow_result", [False, True], ids=["full-history", "from-result"])
async def test_json_roundtrip_every_call_costs_nothing_extra(tmp_path, follow_result):
    """A history JSON round-tripped before every call restores to exactly what was sent,
    with as many compactions as the same history passed as stable objects."""
    stable_store, rt_store = SessionStore(tmp_path / "a"), SessionStore(tmp_path / "b")
    mk = lambda st: MessageCompactor(counter=HeuristicCounter(), window=4000, store=st)  # noqa: E731
    plan = script(30)
    sent, n_stable, _ = await drive(mk(stable_store), steps=30, follow_result=follow_result,
                                    plan=plan)
    sent2, n_rt, _ = await drive(mk(rt_store), steps=30, follow_result=follow_result,
                                 rebuild=roundtrip, plan=plan)
    assert canon(sent) == canon(sent2)  # the same agent both times
    assert n_stable >= 3
    assert n_rt == n_stable
    assert canon(rt_store.restore("s")) == canon(sent)
    assert canon(stable_store.restore("s")) == canon(sent)


@pytest.mark.parametrize("follow_result", [False, True], ids=["full-history", "from-result"])
async def test_restart_mid_session_archives_nothing_twice(tmp_path, follow_result):
    """A new process (a new compactor on the same store) mid-session resumes it: restore is
    the distinct history, each message archived once."""
    store = SessionStore(tmp_path)
    mk = lambda: MessageCompactor(counter=HeuristicCounter(), window=4000,  # noqa: E731
                                  store=SessionStore(tmp_path))
    sent, n, _ = await drive(mk(), steps=24, follow_result=follow_result, rebuild=roundtrip,
                             restart=mk)
    assert n >= 2
    assert canon(store.restore("s")) == canon(sent)
    lines = [json.loads(x) for x in
             (store.session_dir("s") / "archive.jsonl").read_text().splitlines()]
    assert len([x for x in lines if "message" in x]) == len(sent)


async def test_concurrent_tasks_sending_deep_copies_restore_once(tmp_path):
    """20 concurrent tasks sending deep copies of one growing history: restore returns each
    of the 80 messages once."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=3000, store=store)
    sent: list[dict] = []
    for t in range(20):
        sent += [a_user(f"user {t} " + "word " * 30), a_text(f"assistant {t} " + "word " * 30),
                 a_user(f"user {t}b"), a_text(f"assistant {t}b")]
    sent.append(a_user("end"))
    prefixes = [sent[:4 * k + 1] for k in range(20)] + [sent]
    await asyncio.gather(*(comp.compact_if_needed(copy.deepcopy(p), session_id="c")
                           for p in prefixes))
    assert canon(store.restore("c")) == canon(sent)
    assert len(sent) == 81


async def test_lookalike_ids_are_separate_sessions(tmp_path):
    """'tenant/alice' and 'tenant__alice' never share a folder; a 201-character id with
    slashes works and is listed back; '.', '..', '' and NUL are ConfigError."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=100_000, store=store)
    long_id = "org/" + "x" * 189 + "/agent-7"
    assert len(long_id) == 201
    histories = {sid: [a_user(f"I am {sid}")] for sid in ("tenant/alice", "tenant__alice", long_id)}
    for sid, h in histories.items():
        await comp.compact_if_needed(h, session_id=sid)
    for sid, h in histories.items():
        assert canon(store.restore(sid)) == canon(h)
    assert sorted(store.sessions()) == sorted(histories)
    assert len({store.session_dir(s) for s in histories}) == 3
    for bad in (".", "..", "", "a\0b"):
        with pytest.raises(ConfigError):
            await comp.compact_if_needed([a_user("x")], session_id=bad)
    # no folder escapes the store
    assert all(p.resolve().is_relative_to(tmp_path.resolve()) for p in tmp_path.rglob("*"))


async def test_summary_like_user_text_is_archived(tmp_path):
    """A user message that starts like our summary tag is the user's: it is archived and
    restored like any other."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=2500, store=store)
    sent = [a_user("<conversation_summary>\nnot ours, the user's\n</conversation_summary>")]
    sent += anthropic_session(10)[1:]
    r = await comp.compact_if_needed(sent, session_id="u")
    assert r.compacted
    assert canon(store.restore("u")) == canon(sent)


async def test_message_replaced_in_place_is_validated_and_archived(tmp_path):
    """A message replaced in the middle of the same list object is noticed: it is validated
    (a broken replacement is rejected) and the new branch archived."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=100_000, store=store)
    history = anthropic_session(4)
    await comp.compact_if_needed(history, session_id="m")
    assert history[4]["role"] == "user" and isinstance(history[4]["content"], str)
    history[4] = a_user("a different question, asked instead")
    await comp.compact_if_needed(history, session_id="m")
    assert canon(store.restore("m")) == canon(history)
    branches = store.branches("m")
    assert len(branches) == 2 and sum(b["current"] for b in branches) == 1
    assert {b["fork"] for b in branches} == {4}
    broken = list(history)
    broken[2] = a_user("this replaces the tool results of messages[1]")   # orphans tool_use
    with pytest.raises(Exception) as e:
        await comp.compact_if_needed(broken, session_id="m")
    assert "messages[" in str(e.value)
    assert canon(store.restore("m")) == canon(history)


async def test_rewrite_before_our_summary_is_a_typed_error(tmp_path):
    """Editing the system prompt that stands before our summary in a compacted OpenAI view
    cannot be placed in the original history: HistoryRewriteError names the index, and
    nothing is archived."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=2500, store=store)
    sent = [{"role": "system", "content": "You are a careful agent."}]
    for t in range(30):
        sent += [{"role": "user", "content": f"question {t} " + "word " * 30},
                 *o_calls("grep"), {"role": "assistant", "content": f"answer {t} " * 20}]
    r = await comp.compact_if_needed(sent, session_id="w")
    assert r.compacted and r.messages[0] == sent[0]
    assert r.messages[1]["content"].startswith("<conversation_summary>")
    edited = [{"role": "system", "content": "You are a different agent."}, *r.messages[1:]]
    before = tree_bytes(tmp_path)
    with pytest.raises(HistoryRewriteError) as e:
        await comp.compact_if_needed(edited, session_id="w")
    assert e.value.index == 0
    assert tree_bytes(tmp_path) == before


async def test_dry_run_agrees_with_the_call_and_writes_nothing(tmp_path):
    """20 calls: dry_run before each call plans exactly what the call then executes, and
    leaves every file of the store as it was."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=3000, store=store)
    history = anthropic_session(4)
    agree = decisions = 0
    for t in range(20):
        before = tree_bytes(tmp_path)
        planned = comp.dry_run(roundtrip(history), session_id="d")
        assert tree_bytes(tmp_path) == before
        r = await comp.compact_if_needed(roundtrip(history), session_id="d")
        decisions += 1
        agree += (planned.compact == r.compacted and planned.kept == r.plan.kept
                  and planned.evicted == r.plan.evicted
                  and planned.tokens_before == r.tokens_before)
        history = history + turn(t)
    assert decisions == 20 and agree == 20


async def test_replaying_the_same_conversation_twice_changes_nothing(tmp_path):
    """The same conversation sent again (a second replay, a retry) leaves the archive's
    bytes as they were."""
    store = SessionStore(tmp_path)
    sent = anthropic_session(8)

    async def replay() -> None:
        comp = MessageCompactor(counter=HeuristicCounter(), window=3000, store=store)
        for k in range(1, len(sent) + 1):
            if sent[k - 1]["role"] == "user":
                await comp.compact_if_needed(roundtrip(sent[:k]), session_id="twice")

    await replay()
    archive = store.session_dir("twice") / "archive.jsonl"
    first = archive.read_bytes()
    await replay()
    assert archive.read_bytes() == first
    assert canon(store.restore("twice")) == canon(sent)


async def test_history_rewrite_is_recorded_in_the_ledger(tmp_path):
    """A full history that differs from the archived one starts a branch, and the ledger
    says where."""
    sink = MemorySink()
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=100_000, store=store, sink=sink)
    a = anthropic_session(3)
    await comp.compact_if_needed(a, session_id="b")
    b = a[:4] + [a_user("another way")]
    await comp.compact_if_needed(b, session_id="b")
    recs = sink.of("history_rewrite")
    assert len(recs) == 1 and recs[0]["fork"] == 4
    assert canon(store.restore("b")) == canon(b)
    await comp.compact_if_needed(a, session_id="b")        # back to the first branch
    assert canon(store.restore("b")) == canon(a)


WORKER = r"""
import asyncio, json, sys
from compactor import HeuristicCounter, MessageCompactor, SessionStore
from compactor._replay import load_conversations
root, path, tag = sys.argv[1], sys.argv[2], sys.argv[3]
convs = load_conversations(path)
comp = MessageCompactor(counter=HeuristicCounter(), window=1500, store=SessionStore(root))
print("ready", flush=True)
sys.stdin.readline()
async def main():
    for c in convs:
        for k in range(1, len(c.messages) + 1):
            if c.messages[k - 1].get("role") == "user":
                await comp.compact_if_needed(json.loads(json.dumps(c.messages[:k])),
                                             session_id=c.id)
asyncio.run(main())
print("done", tag, flush=True)
"""


def test_two_processes_on_one_store_converge(tmp_path):
    """Two real processes replaying the same conversations into one store at once: every
    session restores to its conversation, each message archived once."""
    convs = []
    for k in range(4):
        msgs = anthropic_session(4 + 3 * k)
        convs.append({"id": f"team/conv-{k}", "messages": msgs})
    data = tmp_path / "convs.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in convs))
    root = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(data), str(i)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    try:
        readers = [LineReader(p.stdout) for p in procs]
        for rd in readers:
            assert rd.readline(timeout=60).strip() == "ready"
        for p in procs:                       # start both at once
            p.stdin.write("go\n")
            p.stdin.flush()
        for rd in readers:
            assert rd.readline(timeout=100).startswith("done")
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    store = SessionStore(root)
    for c in convs:
        assert canon(store.restore(c["id"])) == canon(c["messages"])
        lines = [json.loads(x) for x in
                 (store.session_dir(c["id"]) / "archive.jsonl").read_text().splitlines()]
        assert len([x for x in lines if "message" in x]) == len(c["messages"])


async def test_sessions_in_memory_are_bounded_and_reload_from_the_store(tmp_path):
    """With max_sessions=2, a third session evicts the least recently used one; its next
    call reloads the state from the store and its restore is still exact."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=2500, store=store, max_sessions=2)
    sent = {sid: anthropic_session(10) for sid in ("a", "b", "c")}
    for sid, h in sent.items():
        r = await comp.compact_if_needed(h, session_id=sid)
        assert r.compacted
    assert comp.session_state_count() == 2
    more = [a_text("later"), a_user("and then")]
    r = await comp.compact_if_needed(sent["a"] + more, session_id="a")   # "a" was evicted
    assert comp.session("a").compaction_count >= 1
    assert canon(store.restore("a")) == canon(sent["a"] + more)
    assert r.messages[0]["content"].startswith("<conversation_summary>")


def test_compact_sync_without_a_running_loop(tmp_path):
    """compact_sync from plain synchronous code compacts, archives and restores like the
    async call."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=2500, store=store)
    try:
        sent = anthropic_session(10)
        r = comp.compact_sync(sent, session_id="sync", timeout_s=60)
        assert r.compacted and canon(store.restore("sync")) == canon(sent)
        more = list(r.messages) + [a_text("ok"), a_user("next")]
        r2 = comp.compact_sync(more, session_id="sync", timeout_s=60)
        assert not r2.compacted and canon(r2.messages) == canon(more)
    finally:
        comp.close()


async def test_compact_sync_inside_a_running_loop(tmp_path):
    """compact_sync called from a coroutine (a sync helper inside an async app) returns the
    result instead of failing on the running loop."""
    comp = MessageCompactor(counter=HeuristicCounter(), window=2500)
    try:
        r = comp.compact_sync(anthropic_session(10), session_id="s2", timeout_s=60)
        assert r.compacted and r.tokens_after < r.tokens_before
    finally:
        comp.close()


@pytest.mark.parametrize("follow_result", [False, True], ids=["full-history", "from-result"])
async def test_shortened_tool_results_stay_shortened_and_archived_whole(tmp_path, follow_result):
    """With overflow='truncate_tool_results' a kept tool result is shortened in the context;
    the next call (full history or from the result) keeps the shortened copy, while the
    archive holds the original."""
    from compactor import PlanConfig

    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=1200, store=store,
                            config=PlanConfig(overflow="truncate_tool_results"))
    call, res = a_calls("read_file")
    res["content"][0]["content"] = "line of a very long file\n" * 400
    sent = [a_user("read the file please"), call, res]
    r = await comp.compact_if_needed(sent, session_id="t")
    shortened = [m for m in r.messages if m is not res and m.get("role") == "user"
                 and isinstance(m.get("content"), list)]
    assert r.compacted and shortened
    assert len(json.dumps(shortened[-1])) < len(json.dumps(res)) // 2
    nxt = (list(r.messages) if follow_result else list(sent)) + [a_text("done"), a_user("next")]
    r2 = await comp.compact_if_needed(nxt, session_id="t")
    assert len(json.dumps(r2.messages)) < len(json.dumps(sent)) // 2
    assert canon(store.restore("t")) == canon(sent + nxt[-2:])


@pytest.mark.parametrize("follow_result", [False, True], ids=["full-history", "from-result"])
async def test_tool_result_clearing_first_then_summary(tmp_path, follow_result):
    """With clear_tool_results on, old tool results are cleared before anything is
    summarized (no summarizer call, the ledger lists what was cleared with its archive
    ordinal); the cleared placeholders stay on the next calls; the archive keeps the
    originals; every history is valid by the independent checker."""
    from compactor import PlanConfig
    from compactor.testing._rules import anthropic_problems

    class Counting:
        name = "counting"
        calls = 0

        async def summarize(self, req):
            Counting.calls += 1
            return "summary of the earlier turns"

    sink = MemorySink()
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=3000, store=store, sink=sink,
                            summarizer=Counting(),
                            config=PlanConfig(clear_tool_results=True, clear_keep_last=1,
                                              clear_min_tokens=50))
    sent = [a_user("inspect the repository")]
    history = list(sent)
    results = []
    for t in range(8):
        call, res = a_calls("read_file")
        res["content"][0]["content"] = f"file {t} body ABC-{t:03d} " + "code line\n" * 150
        results.append(res)
        new = [call, res, a_text(f"read file {t}"), a_user(f"continue {t}")]
        sent += new
        history += new
        r = await comp.compact_if_needed(history, session_id="c")
        assert anthropic_problems(r.messages) == []
        if follow_result:
            history = list(r.messages)
    cleared = [c for rec in sink.of("compaction") for c in rec["cleared"]]
    assert cleared, "some tool results were cleared"
    first = sink.of("compaction")[0]
    assert first["cleared"] and first["summarizer"] is None and first["messages_removed"] == 0
    cleared_ordinals = {c["ordinal"] for c in cleared}
    assert all(sent[o]["content"][0]["type"] == "tool_result" for o in cleared_ordinals)
    text = json.dumps(r.messages)
    assert not any(json.dumps(res["content"][0]["content"]) in text for res in results[:4])
    assert canon(store.restore("c")) == canon(sent)


async def test_question_time_recall_places_an_archived_fact_next_to_the_question(tmp_path):
    """With recall_share, a fact that left the context comes back in what is sent (next to
    the newest user turn, marked as recalled), the history to continue from stays clean,
    the request is valid by the independent checker, and the ledger records the refs."""
    from compactor.testing._rules import anthropic_problems

    sink = MemorySink()
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=HeuristicCounter(), window=2500, store=store, sink=sink,
                            recall_share=0.2, summarize=False)
    history = [a_user("Remember this: the vault code is ZEBRA-4471."), a_text("Noted.")]
    for t in range(30):
        history += [a_user(f"routine step {t} " + "filler " * 25), a_text(f"done {t} " * 10)]
    r = await comp.compact_if_needed(history, session_id="rc")
    assert r.compacted and "ZEBRA-4471" not in json.dumps(r.messages)
    question = list(r.messages) + [a_text("ok"), a_user("What is the vault code?")]
    r2 = await comp.compact_if_needed(question, session_id="rc")
    sent = json.dumps(r2.to_send())
    assert "ZEBRA-4471" in sent and "recalled" in sent
    assert "ZEBRA-4471" not in json.dumps(r2.messages)
    assert anthropic_problems(r2.to_send()) == []
    assert 0 in r2.recall.ordinals
    assert sink.of("recall") and 0 in sink.of("recall")[-1]["refs"]
    assert canon(store.restore("rc")) == canon(history + question[-2:])
