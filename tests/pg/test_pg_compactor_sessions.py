"""MessageCompactor on a PostgreSQL store: histories JSON round-tripped before every call,
and a restart mid-session, restore exactly what was sent, with the compactions the file
store gives for the same agent."""

from __future__ import annotations

import json

import pytest

from builders import a_calls, a_text, a_user, anthropic_session
from compactor import HeuristicCounter, MessageCompactor
from compactor._pgstore import PostgresStore
from compactor._store import FileSessionStore
from pg_support import canon


def turn(t: int) -> list[dict]:
    """Five messages an agent appends in one step (a text answer, a question, a tool loop)."""
    call, res = a_calls("grep", "read_file")
    return [a_text(f"answer {t} " * 20), a_user(f"question {t} ORD-{t:05d}"), call, res,
            a_user(f"more {t}")]


async def drive(make, steps: int, plan, *, follow_result: bool, restart_at: int | None):
    """An agent loop through JSON: each call's history is json round-tripped; at
    ``restart_at`` a new compactor (a restarted process) takes over. Returns (sent,
    compactions)."""
    first, steps_new = plan
    comp = make()
    sent, history, compactions = list(first), list(first), 0
    for t in range(steps):
        if t == restart_at:
            comp = make()
        r = await comp.compact_if_needed(json.loads(json.dumps(history)), session_id="team/s 1")
        compactions += r.compacted
        sent += steps_new[t]
        history = (list(r.messages) if follow_result else history) + steps_new[t]
    r = await comp.compact_if_needed(json.loads(json.dumps(history)), session_id="team/s 1")
    return sent, compactions + r.compacted


@pytest.mark.parametrize("follow_result", [False, True], ids=["full-history", "from-result"])
async def test_round_trips_and_a_restart_restore_what_was_sent(pg_url, tmp_path, follow_result):
    """30 JSON round-tripped calls with a restart at call 15 on PostgreSQL restore the
    distinct history sent, each message archived once, with as many compactions as on the
    file store."""
    plan = (anthropic_session(6), [turn(t) for t in range(30)])
    stores: list[PostgresStore] = []

    def make_pg() -> MessageCompactor:
        stores.append(PostgresStore(pg_url))
        return MessageCompactor(counter=HeuristicCounter(), window=4000, store=stores[-1])

    def make_file() -> MessageCompactor:
        return MessageCompactor(counter=HeuristicCounter(), window=4000,
                                store=FileSessionStore(tmp_path))

    try:
        sent, n_pg = await drive(make_pg, 30, plan, follow_result=follow_result, restart_at=15)
        sent_f, n_file = await drive(make_file, 30, plan, follow_result=follow_result,
                                     restart_at=15)
        check = PostgresStore(pg_url)
        stores.append(check)
        assert canon(sent) == canon(sent_f)
        assert n_pg >= 3 and n_pg == n_file
        assert canon(check.restore("team/s 1")) == canon(sent)
        assert check.info("team/s 1")["messages_archived"] == len(sent)
        state = check.load_state("team/s 1")
        assert state["compaction_count"] == n_pg == state["version"]
    finally:
        for s in stores:
            s.close()
