"""Budget limits at the edges: a tiny budget at simple complexity is never zero, a
negative max_tokens is a ConfigError, and hard mode never falls back to the model's
window."""

from __future__ import annotations

import pytest

from compactor import ConfigError, ContextOverflowError, MemorySink
from compactor.budgets import BudgetMonitor, effective_budget, parse_config, usable_cap


def test_tiny_budget_at_simple_complexity_is_not_zero():
    """budget_tokens = 1 at simple (x0.5) rounds to 1, not 0 (which divided by zero in
    alerts and the usage record)."""
    cfg = parse_config({"profiles": {"tiny": {"budget_tokens": 1, "weights": {"recent": 1.0}}},
                        "settings": {"default_profile": "tiny"}})
    assert effective_budget(cfg.profiles["tiny"], "simple").tokens == 1
    sink = MemorySink()
    with BudgetMonitor(cfg, sink=sink).start("a", complexity="simple") as inv:
        inv.check(1)
    assert sink.of("usage")[0]["usage_pct"] == 100.0


def test_negative_max_tokens_is_a_config_error(cli):
    """A negative output reserve would raise the cap above the model's window; it is a
    ConfigError naming max_tokens (and a CLI usage error)."""
    with pytest.raises(ConfigError) as info:
        usable_cap(model="claude-sonnet-4-5", max_tokens=-5)
    assert info.value.field == "max_tokens"
    with pytest.raises(SystemExit):
        cli("budgets", "estimate", "fix it now", "--max-tokens", "-5")


class _OverflowingCompactor:
    """compact_if_needed: ContextOverflowError with the budget window; with no window
    (the model's own), a result far over any budget."""

    def __init__(self) -> None:
        self.unbounded_calls = 0

    async def compact_if_needed(self, messages, *, window=None, force=False, **kw):
        if window is not None:
            raise ContextOverflowError(floor_tokens=10, summary_tokens=5, window_tokens=12)
        self.unbounded_calls += 1

        class R:
            tokens_after = 10**6
            messages = []
        return R()


async def test_hard_mode_never_falls_back_to_the_models_window():
    """Hard mode: when compaction overflows the budget window, the request is refused
    (an error), never compacted to the model's window and returned unchecked."""
    mon = BudgetMonitor(enforcement="hard")
    comp = _OverflowingCompactor()
    with mon.start("test-runner", complexity="medium") as inv:
        with pytest.raises(ContextOverflowError):
            await inv.compact(comp, [{"role": "user", "content": "hi"}])
    assert comp.unbounded_calls == 0
