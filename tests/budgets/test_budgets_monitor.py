"""Complexity detection, effective budgets, and BudgetMonitor's alerts and enforcement
(without a model server; see test_budgets_loopback.py for the HTTP end to end)."""

from __future__ import annotations

import logging

import pytest

from compactor import BudgetExceededError, ConfigError, MemorySink
from compactor.budgets import (BudgetMonitor, Complexity, HardBudgetExceededError,
                               default_config, detect_complexity)

#: Our spec's multipliers, written out here rather than read from the package.
SPEC_MULTIPLIERS = {"simple": 0.5, "medium": 1.0, "complex": 1.5, "multi-system": 2.0}

TASKS = {
    "simple": "Fix the typo in the docstring of parse_args.",
    "medium": "Add a --verbose flag to the command line tool so that it prints each file "
              "it processes and how long the processing took.",
    "complex": "Refactor the session store in compactor/_store.py, compactor/_compactor.py "
               "and tests/test_store.py so that state is saved atomically, and rewrite the "
               "restore path to verify content hashes.",
    "multi-system": "Migrate the billing service from MySQL to Postgres, integrate the new "
                    "schema with Kafka events consumed by the payments backend, and update "
                    "the Redis cache invalidation in billing/models.py and billing/events.py.",
}


@pytest.mark.parametrize("level", list(TASKS))
def test_complexity_levels_from_task_text(level):
    """Each example task is classified at its level, with its spec multiplier, and the
    reasons list the signals that gave points."""
    a = detect_complexity(TASKS[level])
    assert a.level.value == level
    assert a.multiplier == SPEC_MULTIPLIERS[level]
    assert a.source == "detected"
    if level != "medium":
        assert a.reasons, "a non-default level must say why"


def test_unsure_is_medium_and_override_wins():
    """No text or a two-word text is 'medium' (source 'default'); an override wins over
    any text; an unknown override is a ConfigError naming 'complexity'."""
    for text in (None, "", "continue please"):
        a = detect_complexity(text)
        assert (a.level, a.source) == (Complexity.MEDIUM, "default")
    a = detect_complexity(TASKS["simple"], override="multi_system")
    assert (a.level, a.multiplier, a.source) == (Complexity.MULTI_SYSTEM, 2.0, "override")
    with pytest.raises(ConfigError) as info:
        detect_complexity("x", override="huge")
    assert info.value.field == "complexity"


def test_effective_budget_is_profile_times_multiplier_capped_by_usable_window():
    """budget = profile budget x multiplier, capped by the model's window minus max_tokens
    (claude-sonnet is the CODING tier: 128,000 tokens in our spec)."""
    cfg = default_config()
    mon = BudgetMonitor(cfg)
    arch = cfg.profiles["role-architect"].budget_tokens
    for level, mult in SPEC_MULTIPLIERS.items():
        b, _ = mon.budget_for("architect", complexity=level)
        assert b.tokens == round(arch * mult) and b.cap_tokens is None
        b, _ = mon.budget_for("architect", complexity=level, model="claude-sonnet-4-5",
                              max_tokens=8_000)
        assert b.tokens == min(round(arch * mult), 128_000 - 8_000)
        assert b.capped == (round(arch * mult) > 120_000)
        assert sum(b.scopes.values()) <= b.tokens
        assert b.scopes["recent"] == int(b.tokens * cfg.profiles["role-architect"].weights["recent"])


def test_alerts_fire_once_each_at_75_90_100_percent(caplog):
    """Crossing 75%, 90% and 100% fires info, warning and critical once each per
    invocation, to the sink, to logging and to the callback; a new invocation starts over."""
    sink, seen = MemorySink(), []
    mon = BudgetMonitor(sink=sink, on_alert=seen.append, enforcement="soft")
    caplog.set_level(logging.INFO, logger="compactor.budgets")
    with mon.start("test-runner", complexity="medium", invocation_id="i1") as inv:
        budget = inv.base.tokens
        for share_pct in (50, 74, 75, 80, 89, 90, 95, 100, 99, 100):
            inv.check(budget * share_pct // 100)
        assert inv.bumps == []                      # exactly at the budget: not over
    alerts = sink.of("budget_alert")
    assert [a["level"] for a in alerts] == ["info", "warning", "critical"]
    assert [a["used_tokens"] for a in alerts] == [budget * 75 // 100, budget * 90 // 100, budget]
    assert all(a["invocation_id"] == "i1" and a["budget_tokens"] == budget for a in alerts)
    assert [a.level for a in seen] == ["info", "warning", "critical"]
    levels = [r.levelno for r in caplog.records if "budget" in r.getMessage()]
    assert levels == [logging.INFO, logging.WARNING, logging.CRITICAL]
    usage = sink.of("usage")
    assert len(usage) == 1 and usage[0]["tokens"] == budget and usage[0]["exceeded"] is False
    with mon.start("test-runner", complexity="medium", invocation_id="i2") as inv:
        inv.check(budget * 80 // 100)
    assert [a["level"] for a in sink.of("budget_alert")][3:] == ["info"]


def test_hard_mode_raises_before_the_call_and_records_the_block():
    """Hard mode: a request over the budget raises HardBudgetExceededError (a
    BudgetExceededError naming the budget and the tokens); the usage record counts it."""
    sink = MemorySink()
    mon = BudgetMonitor(sink=sink, enforcement="hard")
    with pytest.raises(BudgetExceededError) as info:
        with mon.start("lint-fixer", complexity="simple") as inv:
            inv.check(inv.base.tokens)              # at the budget: allowed
            inv.check(inv.base.tokens + 1)
    e = info.value
    assert isinstance(e, HardBudgetExceededError)
    assert (e.budget_tokens, e.used_tokens) == (inv.base.tokens, inv.base.tokens + 1)
    assert str(e.budget_tokens) in str(e) and "fix:" in str(e)
    (usage,) = sink.of("usage")
    assert usage["blocked"] == 1 and usage["exceeded"] is True and usage["bumps"] == 0


def test_soft_mode_bumps_one_profile_up_and_records_it():
    """Soft mode: over the budget, the invocation moves one profile up (same complexity),
    recorded as budget_bump; at the largest profile the bump is recorded once, budget kept."""
    cfg = default_config()
    sink = MemorySink()
    mon = BudgetMonitor(cfg, sink=sink, enforcement="soft")
    with mon.start("test-runner", complexity="complex") as inv:
        first = inv.base.tokens
        inv.check(first + 10)
        up = cfg.profiles["specialist-broad"].budget_tokens
        assert (inv.budget.profile, inv.budget.tokens) == ("specialist-broad", round(up * 1.5))
    (bump,) = sink.of("budget_bump")
    assert (bump["from_profile"], bump["to_profile"]) == ("specialist-narrow", "specialist-broad")
    assert bump["budget_tokens_before"] == first and bump["used_tokens"] == first + 10
    with mon.start("architect", complexity="medium") as inv:
        for _ in range(3):
            inv.check(inv.base.tokens * 2)
        assert inv.budget == inv.base
    tops = sink.of("budget_bump")[1:]
    assert len(tops) == 1 and tops[0]["to_profile"] is None
    usage = sink.of("usage")[-1]
    assert usage["bumps"] == 1 and usage["final_profile"] == "role-architect"


def test_provider_usage_corrects_later_estimates():
    """After the provider reports 1.25x our estimate, the next estimate is scaled by 1.25
    (so alerts and enforcement use provider tokens)."""
    mon = BudgetMonitor(enforcement="hard")
    with mon.start("coordinator", complexity="medium", model="claude-opus-4-5") as inv:
        inv.check(8_000)
        inv.record_usage(10_000, 300)
        assert inv.corrected(40_000) == 50_000
        assert inv.check(40_000) == 50_000
        usage = inv.finish()
    assert usage["calls"] == 1 and usage["input_tokens"] == 10_000
    assert usage["output_tokens"] == 300 and usage["tokens"] == 50_000
