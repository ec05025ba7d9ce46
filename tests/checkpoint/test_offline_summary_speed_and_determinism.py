"""The offline summarizer is deterministic across hash seeds and linear in span size."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from compactor import ExtractiveSummarizer, HeuristicCounter, SummaryRequest
from compactor._facts import extract_facts, missing
from compactor._format import Format

def _replay_under_seed(path: Path, seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    r = subprocess.run([sys.executable, "-m", "compactor", "replay", str(path), "--window", "4000",
                        "--limit", "25", "--json"], env=env, capture_output=True, text=True,
                       timeout=100)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_replay_is_identical_under_two_hash_seeds(shared_data: Path) -> None:
    """Replaying 25 real tau-bench conversations at a 4,000-token window sends the same
    tokens and keeps the same facts when PYTHONHASHSEED differs (seeds 1 and 3 differed
    when sentence scores summed a set in hash order)."""
    path = shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl"
    a = _replay_under_seed(path, "1")
    b = _replay_under_seed(path, "3")
    assert a["compactions"] > 20
    keys = ("tokens_sent", "tokens_after", "must_keep_kept", "compactions")
    assert [a[k] for k in keys] == [b[k] for k in keys]


def _prose(n_chars: int, seed: int) -> str:
    rnd = random.Random(seed)
    words = ("deploy the service to region with budget limit for invoice table cache index "
             "build review metric report user asked about").split()
    parts: list[str] = []
    size = 0
    while size < n_chars:
        s = " ".join(rnd.choice(words) for _ in range(10))
        s += f" ID{rnd.randint(1000, 999999)} src/m{rnd.randint(0, 999)}/f.py ${rnd.randint(1, 9999)}."
        parts.append(s.capitalize())
        size += len(s) + 1
    return " ".join(parts)


def test_one_megabyte_message_is_summarized_within_ten_seconds() -> None:
    """A 1 MB evicted message dense with identifiers is summarized in < 10 CPU seconds (the
    quadratic overlap check took 13 s on this kind of text; benchmarks/bench_summarizer_speed.py
    holds the < 3 s goal)."""
    text = _prose(1_000_000, 3)
    req = SummaryRequest([{"role": "user", "content": text}], Format.ANTHROPIC, None, 2000,
                         HeuristicCounter())
    t0 = time.process_time()  # CPU seconds: other processes on the machine do not count
    out = ExtractiveSummarizer().summarize_sync(req)
    assert time.process_time() - t0 < 10.0
    assert 0 < HeuristicCounter().count(out) <= 2000


def test_fact_extraction_time_grows_linearly() -> None:
    """Extracting the facts of 4x the text takes well under 16x the time (linear, not
    quadratic, in the number of items)."""
    small, big = _prose(100_000, 5), _prose(400_000, 5)
    t0 = time.process_time()
    n_small = len(extract_facts(small))
    t1 = time.process_time()
    n_big = len(extract_facts(big))
    t2 = time.process_time()
    assert n_big > 3 * n_small
    assert (t2 - t1) < 8 * max(t1 - t0, 1e-3)


def test_missing_matches_whole_words_only() -> None:
    """``missing`` finds items as whole normalized words: "v1.2" is present in "use v1.2
    now" but "v1.23" and "1.2.3" are not."""
    ctx = "Use v1.2 now, then Deploy  to eu-west-2."
    assert missing(["v1.2", "v1.23", "deploy to", "1.2.3", "eu-west-2", "west"], ctx) == ["v1.23", "1.2.3"]
