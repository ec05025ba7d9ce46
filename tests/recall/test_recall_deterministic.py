"""Recall gives the same bytes under any PYTHONHASHSEED."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, tempfile
sys.path.insert(0, sys.argv[1])
from compactor import HeuristicCounter, SessionStore
from compactor._format import Format
from compactor._recall import RecallIndex, retrieve
from conftest import archive, fact_history
store = SessionStore(tempfile.mkdtemp())
archive(store, "s", fact_history(30))
ix = RecallIndex(None)
for q in ("Which region does the staging database live in?", "merchant id config build 7",
          "green build region database config routine check"):
    b = retrieve(store, "s", q, budget_tokens=350, counter=HeuristicCounter(),
                 fmt=Format.ANTHROPIC, index=ix)
    sys.stdout.write(b.text + "\n---\n")
"""


def test_same_block_under_different_hash_seeds():
    """Three queries (one with many ties) give byte-identical blocks under
    PYTHONHASHSEED 0, 1 and 4242."""
    outs = []
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        p = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stderr[-2000:]
        outs.append(p.stdout)
    assert outs[0].count("<recalled_context") == 3
    assert outs[0] == outs[1] == outs[2]
