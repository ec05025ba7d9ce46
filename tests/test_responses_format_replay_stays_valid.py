"""The tau-bench transcripts, converted to Responses API items by ``tools/to_responses.py``,
replay at 2k / 4k / 8k windows with every sent history accepted by the independent
Responses checker (``compactor.testing._rules.responses_problems``), reasoning items sent
unchanged and still directly before the item they belong to."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compactor import Format, MessageCompactor, PlanConfig, TiktokenCounter
from compactor._replay import load_conversations, replay
from compactor.testing._rules import responses_problems

ROOT = Path(__file__).resolve().parent.parent
#: The thresholds the replays run with, pinned so the compaction counts asserted below do
#: not move with the library's defaults (these were the defaults when measured).
PINNED = PlanConfig(high_watermark=0.7, low_watermark=0.4, max_summary_tokens=2000)
PINNED_FLAGS = ["--high", "0.7", "--low", "0.4", "--max-summary-tokens", "2000"]
TOOL = ROOT / "tools" / "to_responses.py"


def _key(m):
    return json.dumps(m, sort_keys=True, ensure_ascii=False)


def convert(src: Path, dst: Path, *extra: str) -> Path:
    """Run the committed converter in a subprocess, as a user would."""
    p = subprocess.run([sys.executable, str(TOOL), str(src), str(dst), *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return dst


class _Judge:
    """Stands in for the compactor in ``replay``: passes each call through and judges
    what comes back with the independent checker; checks every reasoning item sent is an
    input item, byte for byte, followed by the same item that followed it there."""

    def __init__(self, inner, following):
        self.inner = inner
        self.following = following      # reasoning item key -> key of the item after it
        self.compactions = 0
        self.calls = 0
        self.broken: list[str] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def compact_if_needed(self, history, **kw):
        r = await self.inner.compact_if_needed(history, **kw)
        assert r.fmt is Format.RESPONSES
        sent = list(r.to_send())
        self.calls += 1
        self.broken += [f"{kw.get('session_id')}: {b.rule} at {b.index}"
                        for b in responses_problems(sent)]
        for i, m in enumerate(sent):
            if m.get("type") == "reasoning":
                k = _key(m)
                if k not in self.following or i + 1 >= len(sent) \
                        or _key(sent[i + 1]) != self.following[k]:
                    self.broken.append(f"{kw.get('session_id')}: reasoning {m.get('id')} "
                                       "changed or separated from its item")
        self.compactions += r.compacted
        return r


def _replay(path: Path, window: int, part: slice = slice(None)) -> _Judge:
    convs = load_conversations(path)[part]
    following = {}
    for c in convs:
        for a, b in zip(c.messages, c.messages[1:]):
            if a.get("type") == "reasoning":
                following[_key(a)] = _key(b)
    judge = _Judge(MessageCompactor(counter=TiktokenCounter(), config=PINNED), following)
    asyncio.run(replay(convs, judge, window=window))
    return judge


@pytest.fixture(scope="module")
def converted(shared_data, tmp_path_factory):
    """Both shared tau-bench files converted (the OpenAI runs with synthetic reasoning)."""
    d = tmp_path_factory.mktemp("responses")
    return {
        "anthropic": convert(shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl",
                             d / "tau_a.jsonl"),
        "openai+reasoning": convert(shared_data / "tau_bench_gpt4o_airline.openai.json",
                                    d / "tau_o.jsonl", "--reasoning"),
    }


def test_converter_writes_valid_responses_items(converted):
    """Every converted conversation is detected as Responses, keeps the provider rules, and
    has one function_call_output per function_call (the 1,164 calls of the runs)."""
    for name, path in converted.items():
        convs = load_conversations(path)
        assert len(convs) == 200, name
        assert all(c.fmt is Format.RESPONSES for c in convs)
        calls = sum(1 for c in convs for m in c.messages if m.get("type") == "function_call")
        outs = sum(1 for c in convs for m in c.messages
                   if m.get("type") == "function_call_output")
        assert calls == outs == 1164, (name, calls, outs)
        assert all(responses_problems(c.messages) == [] for c in convs)
    o = load_conversations(converted["openai+reasoning"])
    assert sum(1 for c in o for m in c.messages if m.get("type") == "reasoning") > 1000


@pytest.mark.parametrize("window,part", [(2000, slice(0, 100)), (2000, slice(100, 200)),
                                         (4000, slice(None)), (8000, slice(None))],
                         ids=["2000-runs1-100", "2000-runs101-200", "4000", "8000"])
def test_tau_bench_as_responses_items_replays_valid(converted, window, part):
    """At each window every history sent is valid for the independent checker, and the
    replay compacts (the 2k replay, ~2,000 compactions, in two halves to bound the time)."""
    j = _replay(converted["anthropic"], window, part)
    assert j.broken == [], j.broken[:5]
    assert j.calls > 1000 and j.compactions >= (25 if window == 8000 else 250)


@pytest.mark.parametrize("window", [2000, 4000, 8000])
def test_reasoning_items_stay_whole_and_with_their_turn(converted, window):
    """With a reasoning item before every assistant turn, no compaction alters one or
    separates it from the item it belongs to (first 60 runs, to bound the time)."""
    j = _replay(converted["openai+reasoning"], window, slice(0, 60))
    assert j.broken == [], j.broken[:5]
    assert j.compactions > 0


def test_cli_replay_reports_no_invalid_history(converted):
    """`compactor replay FILE --window 4000 --json` on the converted file (pinned
    thresholds): 0 invalid, 0 over the window, must-keep items kept at >= 99%."""
    p = subprocess.run([sys.executable, "-m", "compactor.cli", "replay",
                        str(converted["anthropic"]), "--window", "4000", *PINNED_FLAGS,
                        "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr
    d = json.loads(p.stdout)
    assert d["invalid_histories"] == 0 and d["over_window"] == 0 and d["compactions"] > 250
    assert d["must_keep_kept"] / d["must_keep_total"] >= 0.99
