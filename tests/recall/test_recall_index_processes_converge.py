"""Two processes archiving and indexing the same session at the same time end with one
index, equal to the one a single process builds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from compactor import SessionStore
from compactor._recall import RecallIndex

from conftest import fact_history

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
from compactor import SessionStore
from compactor._recall import RecallIndex
from compactor._store import content_hash
from conftest import fact_history

root, go, me = sys.argv[1], float(sys.argv[2]), sys.argv[3]
store = SessionStore(root)
ix = RecallIndex(store.root / "recall.sqlite3")
h = fact_history(60)
while time.time() < go:
    time.sleep(0.005)
new = 0
for end in range(10, len(h) + 1, 7 if me == "a" else 11):
    store.append("s", [(i, content_hash(m), m) for i, m in enumerate(h[:end])])
    new += ix.update(store, "s")
store.append("s", [(i, content_hash(m), m) for i, m in enumerate(h)])
new += ix.update(store, "s")
print(json.dumps({"new": new}))
"""


def test_two_processes_indexing_one_session_converge(tmp_path):
    """Both processes append the same conversation in different chunk sizes and update the
    index after each chunk; afterwards every archived message is indexed exactly once
    (the two processes' new-node counts add up to the history's length) and a query ranks
    exactly as a fresh single-process index ranks it."""
    root = tmp_path / "store"
    SessionStore(root)
    go = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(go), me,
                               str(Path(__file__).parent)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me in ("a", "b")]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    h = fact_history(60)
    assert sum(o["new"] for o in outs) == len(h)
    shared = RecallIndex(root / "recall.sqlite3")
    fresh = RecallIndex(None)
    try:
        assert shared.indexed("s") == (len(h), len(h))
        fresh.update(SessionStore(root), "s")
        for q in ("staging database region", "merchant id payments", "build 41 green"):
            assert shared.search("s", q) == fresh.search("s", q)
    finally:
        shared.close()
        fresh.close()
