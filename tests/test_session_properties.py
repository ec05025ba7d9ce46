"""Property: whatever sequence of calls an agent makes -- full history or the last result,
JSON round-trips, restarts, the same call twice, concurrent tasks, a second worker on the
same store -- ``restore`` gives back the distinct history it sent, and every history the
compactor returns is provider-valid (checked by the independent checker of the tests)."""

from __future__ import annotations

import asyncio
import copy
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import a_calls, a_text, a_user
from compactor import HeuristicCounter, MessageCompactor, SessionStore
from compactor._store import canonical_json

from compactor.testing._rules import anthropic_problems  # written apart from compactor.validate

STEP = st.sampled_from(["text", "tools", "parallel"])
CALL = st.sampled_from(["full", "result", "roundtrip", "restart", "twice", "concurrent",
                        "other_worker"])


def step_messages(kind: str, t: int) -> list[dict]:
    """What the agent appends in one step (ends with a user message)."""
    if kind == "text":
        return [a_text(f"answer {t} " + "words " * 25), a_user(f"question {t} REF-{t:04d}")]
    call, res = a_calls("grep") if kind == "tools" else a_calls("grep", "read_file", "ls")
    return [call, res, a_text(f"done {t} " * 10), a_user(f"next {t}")]


def canon(msgs):
    return [canonical_json(m) for m in msgs]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(STEP, CALL), min_size=1, max_size=22),
       window=st.sampled_from([1500, 2500, 6000]))
def test_restore_is_the_distinct_history_sent(steps, window):
    """Random call sequences against one session: restore == the distinct history sent."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def worker() -> MessageCompactor:
            return MessageCompactor(counter=HeuristicCounter(), window=window,
                                    store=SessionStore(root))

        async def run() -> list[dict]:
            comps = [worker()]
            sent = [a_user("Task: keep everything. ID-0001 " + "context " * 20)]
            view = list(sent)          # what an agent continuing from results holds
            for t, (kind, call) in enumerate(steps):
                new = step_messages(kind, t)
                sent += new
                view += new
                hist = view if call == "result" else sent
                if call == "restart":
                    comps[0] = worker()
                if call == "other_worker":
                    comps.append(worker())
                comp = comps[-1]
                if call == "roundtrip":
                    hist = json.loads(json.dumps(hist))
                if call == "concurrent":
                    rs = await asyncio.gather(*(comp.compact_if_needed(copy.deepcopy(hist),
                                                                       session_id="p")
                                                for _ in range(3)))
                    r = rs[-1]
                else:
                    r = await comp.compact_if_needed(hist, session_id="p")
                    if call == "twice":
                        r = await comp.compact_if_needed(list(hist), session_id="p")
                assert anthropic_problems(r.messages) == []
                view = list(r.messages)
            return sent

        sent = asyncio.run(run())
        assert canon(SessionStore(root).restore("p")) == canon(sent)
