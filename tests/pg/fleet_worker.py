"""A worker of the fleet tests (tests/pg/test_pg_fleet_*.py): one process of a simulated
host, serving the shared sessions of a script through one PostgreSQL store.

    python fleet_worker.py URL SCRIPT.json TAG SEED LOCK_SHARE WINDOW

Prints ``ready``, waits for a line on stdin, then until every session is complete:
picks a random unfinished session, reads how far the store's archive has it, sends the
agent's full history up to the next turn boundary (JSON round-tripped) to
``compact_if_needed`` -- inside the session's store lock for a ``LOCK_SHARE`` fraction of
the steps -- checks the result with the independent provider-rule checker, and prints
``ack SESSION LENGTH SAVED`` (the marker: the call returned, so every message of that
history is acknowledged; SAVED is 1 when it compacted and saved the session state, 0 when
it did not compact or its save lost every race: a ``state_conflict`` event) or ``bad
SESSION RULES``. Ends with ``done TAG CALLS``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor

from compactor import HeuristicCounter, MemorySink, MessageCompactor
from compactor._stores import open_store
from compactor.testing._rules import anthropic_problems


async def main(url: str, script_path: str, tag: str, seed: int, lock_share: float,
               window: int) -> None:
    with open(script_path, encoding="utf-8") as fh:
        script: dict[str, list[dict]] = json.load(fh)["sessions"]
    with open(script_path, encoding="utf-8") as fh:
        bounds: dict[str, list[int]] = json.load(fh)["bounds"]
    store = open_store(url, max_size=3)
    sink = MemorySink()
    comp = MessageCompactor(counter=HeuristicCounter(), window=window, store=store,
                            agent_id=tag, sink=sink)
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    locker = ThreadPoolExecutor(max_workers=1)
    print("ready", flush=True)
    sys.stdin.readline()
    calls = 0
    todo = sorted(script)
    while todo:
        sid = rng.choice(todo)
        have = await asyncio.to_thread(lambda: len(store.branch_hashes(sid)))
        nxt = next((b for b in bounds[sid] if b > have), None)
        if nxt is None:
            todo.remove(sid)
            continue
        history = json.loads(json.dumps(script[sid][:nxt]))
        lost_races = len(sink.of("state_conflict"))
        if rng.random() < lock_share:
            # the lock is taken and released by one thread (the store's lock is per thread)
            cm = store.lock(sid)
            await loop.run_in_executor(locker, cm.__enter__)
            try:
                r = await comp.compact_if_needed(history, session_id=sid)
            finally:
                await loop.run_in_executor(locker, cm.__exit__, None, None, None)
        else:
            r = await comp.compact_if_needed(history, session_id=sid)
        calls += 1
        problems = anthropic_problems(list(r.messages))
        if problems or r.tokens_after > r.window:
            print(f"bad {sid} {[p.rule for p in problems]} {r.tokens_after}/{r.window}",
                  flush=True)
        # a compaction whose state save lost every race to other writers is not saved
        saved = int(r.compacted) - (len(sink.of("state_conflict")) - lost_races)
        print(f"ack {sid} {nxt} {saved}", flush=True)
    print(f"done {tag} {calls}", flush=True)
    store.close()


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], int(a[3]), float(a[4]), int(a[5])))
