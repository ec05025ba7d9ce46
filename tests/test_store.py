"""The lossless archive and session state: nothing the compactor removes is lost."""

import asyncio
import json
import os
import stat
import subprocess
import sys

import pytest

from compactor import (RECALL_TOOL_ANTHROPIC, RECALL_TOOL_OPENAI, ConfigError, Format,
                       MessageCompactor, SessionStore, run_recall_tool, validate)
from compactor._replay import load_conversations, replay
from compactor._store import canonical_json

from builders import a_calls, a_text, a_user, anthropic_session, linear_nodes


def canon(msgs):
    return [canonical_json(m) for m in msgs]




async def test_restore_after_compactions_is_byte_identical(tmp_path, counter):
    """After several compactions restore() gives back every message the agent sent."""
    store = SessionStore(tmp_path)
    comp = MessageCompactor(counter=counter, window=2500, store=store)
    full = anthropic_session(10)
    history = list(full)
    r = await comp.compact_if_needed(history, session_id="s")
    for t in range(30):
        call, res = a_calls("grep", "read_file")
        new = [a_text(f"answer {t} " * 20), a_user(f"question {t} ORD-{t:05d}"), call, res,
               a_user(f"more {t}")]
        full += new
        history = list(r.messages) + new
        r = await comp.compact_if_needed(history, session_id="s")
    assert comp.session("s").compaction_count >= 3
    assert canon(store.restore("s")) == canon(full)


@pytest.mark.parametrize("name", ["tau_bench_gpt4o_airline.anthropic.jsonl",
                                  "tau_bench_gpt4o_airline.openai.json", "locomo_dev.jsonl"])
def test_every_real_transcript_restores_byte_identical(shared_data, tmp_path, name):
    """Replaying each real transcript with compaction, then restore, gives back 100% of the
    original histories byte-identical in canonical JSON."""
    convs = load_conversations(shared_data / name)
    store = SessionStore(tmp_path)
    comp = MessageCompactor(window=4000, store=store)
    stats = asyncio.run(replay(convs, comp, window=4000))
    assert stats.compactions > 0
    same = sum(canon(store.restore(c.id)) == canon(c.messages) for c in convs)
    assert same == len(convs)


async def test_resume_from_disk_in_a_new_process_state(tmp_path, counter):
    """A restarted compactor (same store) resumes the session: the agent's full history is
    matched by content hash, the saved view is reused, and nothing is archived twice."""
    store = SessionStore(tmp_path)
    full = anthropic_session(40)
    r1 = await MessageCompactor(counter=counter, window=3000, store=store).compact_if_needed(
        full, session_id="r")
    assert r1.compacted
    loaded = json.loads(json.dumps(full))          # the agent reloads its history from disk
    loaded += [a_text("reply"), a_user("next")]
    comp2 = MessageCompactor(counter=counter, window=3000, store=store)
    assert comp2.session("r").compaction_count == 1
    r2 = await comp2.compact_if_needed(loaded, session_id="r")
    assert not r2.compacted
    assert canon(r2.messages[:len(r1.messages)]) == canon(r1.messages)
    assert validate(r2.messages, Format.ANTHROPIC) == []
    assert canon(store.restore("r")) == canon(loaded)


async def test_resume_with_compacted_history(tmp_path, counter):
    """An agent that persisted the compacted history resumes without duplicate archiving."""
    store = SessionStore(tmp_path)
    full = anthropic_session(40)
    r1 = await MessageCompactor(counter=counter, window=3000, store=store).compact_if_needed(
        full, session_id="c")
    persisted = json.loads(json.dumps(r1.messages)) + [a_text("reply"), a_user("next")]
    comp2 = MessageCompactor(counter=counter, window=3000, store=store)
    await comp2.compact_if_needed(persisted, session_id="c")
    assert canon(store.restore("c")) == canon(full + persisted[-2:])


def test_files_are_private_and_archives_close_to_gzip(tmp_path):
    """Archive and state files are 0600; a closed segment is gzip and still restores."""
    store = SessionStore(tmp_path)
    msgs = anthropic_session(3)
    nodes = linear_nodes(msgs)
    store.append("a/b", nodes)
    store.save_state("a/b", {"summary": "s"})
    d = store.session_dir("a/b")
    for f in ("archive.jsonl", "state.json"):
        assert stat.S_IMODE(os.stat(d / f).st_mode) == 0o600
    gz = store.close_archive("a/b")
    assert gz.name.endswith(".jsonl.gz") and not (d / "archive.jsonl").exists()
    store.append("a/b", linear_nodes([a_user("after close")], len(msgs), nodes[-1].chain))
    assert canon(store.restore("a/b")) == canon(msgs + [a_user("after close")])
    assert store.sessions() == ["a/b"]
    for bad in ("", ".", "..", "a\0b"):
        with pytest.raises(ConfigError):
            store.session_dir(bad)


def test_torn_archive_tail_is_ignored(tmp_path):
    """A crash mid-append leaves a torn line; restore returns every complete record."""
    store = SessionStore(tmp_path)
    msgs = anthropic_session(2)
    store.append("t", linear_nodes(msgs))
    with open(store.session_dir("t") / "archive.jsonl", "a") as fh:
        fh.write('{"ordinal": 99, "hash": "h", "mess')
    assert canon(store.restore("t")) == canon(msgs)


async def test_recall_and_the_tool_definitions(tmp_path, counter):
    """recall() finds archived messages by words or range; the tool runs in both formats."""
    store = SessionStore(tmp_path)
    full = anthropic_session(40)
    await MessageCompactor(counter=counter, window=3000, store=store).compact_if_needed(
        full, session_id="q")
    hits = store.recall("q", "BUG-1003")
    assert hits and hits[0]["ordinal"] == 12 and "BUG-1003" in hits[0]["text"]
    assert [h["ordinal"] for h in store.recall("q", start=4, end=7)] == [4, 5, 6]
    out = run_recall_tool(store, "q", {"query": "BUG-1003"})
    assert out.startswith("[12] user:")
    assert run_recall_tool(store, "q", json.dumps({"query": "nothing-like-this"})) == \
        "No archived messages match."
    assert RECALL_TOOL_ANTHROPIC["input_schema"] == RECALL_TOOL_OPENAI["function"]["parameters"]


def test_sessions_cli_lists_shows_and_restores(tmp_path, shared_data):
    """replay --store, then `sessions list|show|restore` in real subprocesses."""
    src = shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl"
    run = lambda *a: subprocess.run([sys.executable, "-m", "compactor.cli", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    p = run("replay", str(src), "--window", "4000", "--limit", "3", "--store", str(tmp_path),
            "--json")
    assert p.returncode == 0, p.stderr
    p = run("sessions", "--store", str(tmp_path), "list", "--json")
    rows = json.loads(p.stdout)
    assert len(rows) == 3 and all(r["messages_archived"] > 0 for r in rows)
    sid = rows[0]["session_id"]
    assert "compaction_count" in run("sessions", "--store", str(tmp_path), "show", sid).stdout
    out = tmp_path / "restored.json"
    p = run("sessions", "--store", str(tmp_path), "restore", sid, "--out", str(out))
    conv = next(c for c in load_conversations(src) if c.id == sid)
    assert canon(json.loads(out.read_text())) == canon(conv.messages)
