"""The seeded state-tracking suite (benchmarks/state_tracking.py) meets issue 12's bars on
a handful of sessions: latest values kept, superseded values gone, rules whole."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from compactor import HeuristicCounter

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "state_tracking.py"


def _suite():
    spec = importlib.util.spec_from_file_location("state_tracking_bench", _PATH)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_generator_is_seeded() -> None:
    """The same seed gives the same session; another seed a different one."""
    S = _suite()
    assert S.generate(5)[0] == S.generate(5)[0]
    assert S.generate(5)[0] != S.generate(6)[0]


def test_five_rounds_at_twenty_percent_keep_state() -> None:
    """After 5 rounds at 20% of the transcript, >= 90% of latest values are in the summary,
    no superseded value is, and every rule is whole (text-only state: the harder case)."""
    S = _suite()
    counter = HeuristicCounter()
    t = S.Tally()
    for seed in range(8):
        msgs, items = S.generate(7000 + seed)
        total = sum(counter.count(str(m["content"])) for m in msgs)
        S.score(S.run_session(msgs, int(0.2 * total), counter, "text"), items, t)
    kept = sum(v[0] for v in t.latest.values()) / sum(v[1] for v in t.latest.values())
    stale = sum(v[0] for v in t.stale.values()) / sum(v[1] for v in t.stale.values())
    assert kept >= 0.9 and stale <= 0.05 and t.whole[0] == t.whole[1] == 24
