"""Per-message priority and time to live, next to pin: obeyed by the keep rules, by
clearing and by the checkpoint."""

from __future__ import annotations

from typing import Any

from compactor import HeuristicCounter, validate
from compactor._checkpoint import update
from compactor._clearing import CLEARED_PREFIX
from compactor._format import Format
from compactor._plan import PRIORITY_KEY, TTL_KEY, PlanConfig, apply, plan
from compactor._tokens import message_tokens

COUNTER = HeuristicCounter()
# the thresholds these plans are built around (windows at 0.72-0.8 of a history), given
# explicitly: a keep-rule test must not depend on the shipped defaults
WATERMARKS = {"high_watermark": 0.7, "low_watermark": 0.4, "max_summary_tokens": 2000,
              "summary_share": 0.75}


def _chat(n: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    for k in range(n):
        msgs.append({"role": "user", "content": f"Question {k}: " + "tell me more about the ledger " * 12})
        msgs.append({"role": "assistant", "content": f"Answer {k}: " + "the ledger keeps every entry " * 12})
    return msgs


def _plan(msgs, fmt=Format.OPENAI, share=0.8, **cfg):
    counts = [message_tokens(m, fmt, COUNTER) for m in msgs]
    config = PlanConfig(**{**WATERMARKS, "keep_recent": 0, **cfg})
    return plan(msgs, fmt, counts, overhead_tokens=0, window=int(sum(counts) / share),
                config=config, counter=COUNTER)


def test_high_priority_message_is_kept_verbatim_over_older_units() -> None:
    """An old high-priority message stays verbatim although older than the kept suffix."""
    msgs = _chat(20)
    msgs[4] = {**msgs[4], PRIORITY_KEY: 5}
    p = _plan(msgs, max_summary_tokens=600)
    assert 4 in p.kept and 3 in p.evicted and 5 in p.evicted
    assert validate(apply(p, msgs, "Checkpoint v1 (30 messages)"), Format.OPENAI) == []


def test_low_priority_and_expired_recent_messages_go_to_the_summary() -> None:
    """A recent low-priority message and a recent expired one are evicted while their
    neighbours stay verbatim."""
    msgs = _chat(20)
    n = len(msgs)
    msgs[n - 3] = {**msgs[n - 3], PRIORITY_KEY: -1}
    msgs[n - 5] = {**msgs[n - 5], TTL_KEY: 2}
    p = _plan(msgs)
    assert {n - 3, n - 5} <= set(p.evicted)
    assert {n - 2, n - 4, n - 6} <= set(p.kept)


def test_expired_tool_result_is_cleared_even_among_the_last_uses() -> None:
    """A tool result whose time to live has passed is cleared although it belongs to
    one of the last clear_keep_last tool uses."""
    big = "log line with id JD0146 " * 60
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for k in range(3):
        cid = f"toolu_{k}"
        msgs.append({"role": "assistant", "content": [{"type": "tool_use", "id": cid, "name": "tail",
                                                       "input": {}}]})
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": cid,
                                                  "content": big}]})
    msgs[2] = {**msgs[2], TTL_KEY: 1}
    msgs.append({"role": "assistant", "content": [{"type": "text", "text": "ok"}]})
    p = _plan(msgs, Format.ANTHROPIC, share=0.72, clear_tool_results=True)
    assert [c.index for c in p.cleared] == [2]
    out = apply(p, msgs, None)
    assert out[2]["content"][0]["content"].startswith(CLEARED_PREFIX)


def test_messages_with_a_time_to_live_are_not_carried_into_the_checkpoint() -> None:
    """An ephemeral message's facts do not enter the checkpoint."""
    cp, _ = update(None, [{"role": "user", "content": "The budget is $500."},
                          {"role": "user", "content": "The one-time code is 884213.", TTL_KEY: 3}],
                   Format.OPENAI, [1, 2])
    assert [(f.slot, f.value) for f in cp.facts] == [("budget", "$500")]
    assert all("884213" not in a.text for a in cp.artifacts)
