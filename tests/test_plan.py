"""The pure planner and apply()."""

import pytest

from compactor import (PIN_KEY, ConfigError, ContextOverflowError, Format, PlanConfig, apply,
                       group_units, message_tokens, plan, validate)
from compactor._format import SUMMARY_OPEN, is_summary

from builders import a_calls, a_text, a_user, anthropic_session, o_calls


# the thresholds these tests are built around (windows are set at 0.69 / 0.8 of a history),
# given explicitly: a planner test must not depend on the shipped defaults
AT_07 = PlanConfig(high_watermark=0.7, low_watermark=0.4, max_summary_tokens=2000)


def counts_of(msgs, fmt, counter):
    return [message_tokens(m, fmt, counter) for m in msgs]


def test_under_high_watermark_plans_nothing(counter):
    """Below 0.7 of the window nothing happens."""
    msgs = anthropic_session(3)
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    p = plan(msgs, Format.ANTHROPIC, c, overhead_tokens=0, window=int(sum(c) / 0.69),
             config=AT_07)
    assert not p.compact and p.tokens_before == sum(c)


def test_over_high_watermark_compacts_toward_low_and_keeps_whole_units(counter):
    """Over the watermark the plan evicts whole units and lands near the low watermark."""
    msgs = anthropic_session(30)
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    window = int(sum(c) / 0.8)
    cfg = PlanConfig(high_watermark=0.7, low_watermark=0.4, max_summary_tokens=2000,
                     keep_recent=0)
    p = plan(msgs, Format.ANTHROPIC, c, overhead_tokens=0, window=window, config=cfg)
    assert p.compact and p.evicted and p.kept
    assert p.tokens_after <= cfg.low_watermark * window + max(c)
    units = group_units(msgs, Format.ANTHROPIC)
    for u in units:  # each unit wholly kept or wholly evicted
        idx = set(range(u.start, u.end))
        assert idx <= set(p.kept) or idx <= set(p.evicted)
    assert set(p.kept) | set(p.evicted) == set(range(len(msgs)))
    assert p.kept[-1] == len(msgs) - 1


def test_keep_recent_snaps_outward_to_unit_boundaries(counter):
    """keep_recent messages are kept, widened to whole units."""
    msgs = anthropic_session(30, words=5)
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    p = plan(msgs, Format.ANTHROPIC, c, overhead_tokens=0, window=int(sum(c) / 0.75),
             config=PlanConfig(keep_recent=6, low_watermark=0.05, high_watermark=0.7))
    n = len(msgs)
    assert set(range(n - 6, n)) <= set(p.kept)
    first = min(i for i in p.kept)
    assert first <= n - 6 and set(p.kept) == set(range(first, n))  # one recent suffix
    # the suffix does not start inside a unit: its first message answers no earlier call
    assert not (msgs[first]["role"] == "user" and isinstance(msgs[first]["content"], list)
                and msgs[first]["content"][0].get("type") == "tool_result")


def test_pinned_and_first_user_are_kept_verbatim(counter):
    """Pinned messages (flag or predicate) and the first user message survive compaction."""
    msgs = anthropic_session(30)
    msgs[8] = dict(msgs[8], **{PIN_KEY: True})
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    p = plan(msgs, Format.ANTHROPIC, c, overhead_tokens=0, window=int(sum(c) / 0.9),
             config=PlanConfig(keep_first_user=True, keep_recent=0),
             pin=lambda i, m: i == 12)
    assert {0, 8, 12} <= set(p.kept)
    out = apply(p, msgs, "summary text")
    assert msgs[0] in out and msgs[8] in out and msgs[12] in out


def test_floor_over_window_raises_with_sizes(counter):
    """If the turn in progress alone exceeds the window, ContextOverflowError names the sizes."""
    msgs = [a_user("hi"), a_text("x"), a_user("y" * 4000)]
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    with pytest.raises(ContextOverflowError) as e:
        plan(msgs, Format.ANTHROPIC, c, overhead_tokens=100, window=500)
    assert e.value.window_tokens == 500 and e.value.floor_tokens >= 1100
    assert "500" in str(e.value) and "fix" in str(e.value)


def test_truncate_tool_results_policy_shortens_the_floor(counter):
    """With overflow='truncate_tool_results' a huge last tool result is shortened to fit."""
    call, res = a_calls("read_file")
    res["content"][0]["content"] = "line\n" * 3000
    msgs = [a_user("task"), a_text("ok"), a_user("read it"), call, res]
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    cfg = PlanConfig(overflow="truncate_tool_results")
    p = plan(msgs, Format.ANTHROPIC, c, overhead_tokens=0, window=2000, config=cfg, counter=counter)
    assert p.compact and p.truncations
    out = apply(p, msgs, "earlier: task")
    assert sum(counts_of(out, Format.ANTHROPIC, counter)) <= 2000
    assert "removed by the context compactor" in str(out[-1])
    assert res["content"][0]["content"] == "line\n" * 3000  # the caller's message is untouched
    assert validate(out, Format.ANTHROPIC) == []


def test_apply_inserts_summary_where_each_provider_accepts_it(counter):
    """Anthropic: a leading user message; OpenAI: a system message after the system prompt."""
    msgs = anthropic_session(20)
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    p = plan(msgs, Format.ANTHROPIC, c, overhead_tokens=0, window=int(sum(c) / 0.8),
             config=AT_07)
    out = apply(p, msgs, "the summary")
    assert out[0]["role"] == "user" and out[0]["content"].startswith(SUMMARY_OPEN)
    assert validate(out, Format.ANTHROPIC) == []

    o = [{"role": "system", "content": "sys"}]
    for t in range(20):
        o += [{"role": "user", "content": f"question {t} " * 20}, *o_calls("f", "g"),
              {"role": "assistant", "content": "answer " * 20}]
    o.append({"role": "user", "content": "last"})
    c = counts_of(o, Format.OPENAI, counter)
    p = plan(o, Format.OPENAI, c, overhead_tokens=0, window=int(sum(c) / 0.8), config=AT_07)
    out = apply(p, o, "the summary")
    assert out[0] is o[0] and is_summary(out[1], Format.OPENAI)
    assert validate(out, Format.OPENAI) == []


def test_rolling_summary_stays_one_message(counter):
    """The previous summary is evicted into the next span: one summary message at a time."""
    msgs = anthropic_session(20)
    c = counts_of(msgs, Format.ANTHROPIC, counter)
    w = int(sum(c) / 0.8)
    out = apply(plan(msgs, Format.ANTHROPIC, c, overhead_tokens=0, window=w, config=AT_07),
                msgs, "first")
    out = list(out) + anthropic_session(20)[1:]
    c2 = counts_of(out, Format.ANTHROPIC, counter)
    p2 = plan(out, Format.ANTHROPIC, c2, overhead_tokens=0, window=w, config=AT_07)
    assert p2.previous_summary_index == 0 and 0 in p2.evicted
    out2 = apply(p2, out, "second")
    assert sum(is_summary(m, Format.ANTHROPIC) for m in out2) == 1


def test_plan_config_errors_name_the_field():
    """Out-of-range settings raise ConfigError naming the field."""
    for kw, field in [({"high_watermark": 1.5}, "high_watermark"),
                      ({"high_watermark": 0.7, "low_watermark": 0.8}, "low_watermark"),
                      ({"keep_recent": -1}, "keep_recent"),
                      ({"overflow": "drop"}, "overflow")]:
        with pytest.raises(ConfigError) as e:
            PlanConfig(**kw)
        assert e.value.field == field
