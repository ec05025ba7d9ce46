"""Token budget profiles per agent: complexity-scaled budgets, 75/90/100% alerts,
soft/hard enforcement and the usage report (see ``docs/budgets.md``).

``BudgetMonitor(config, sink=ledger).start(agent_id, task=...)`` begins an invocation;
``await inv.compact(compactor, messages, ...)`` compacts with the effective budget as the
window and enforces it; ``inv.record_usage(...)`` takes the provider's usage; leaving the
``with`` block writes the ``usage`` record that ``compactor budgets report`` reads.

The CLI wiring lives in ``compactor.budgets._cli.add_budget_commands``.
"""

from compactor.budgets._complexity import (MULTIPLIERS, Complexity, ComplexityAssessment,
                                           detect_complexity)
from compactor.budgets._config import (SCOPES, AlertThresholds, BudgetConfig, BudgetConfigError,
                                       Profile, RecommendationThresholds, default_config,
                                       default_config_path, load_config, parse_config,
                                       resolve_config)
from compactor.budgets._monitor import (Budget, BudgetAlert, BudgetMonitor,
                                        HardBudgetExceededError, Invocation, effective_budget,
                                        usable_cap)
from compactor.budgets._report import BudgetReport, GroupStats, compute_report, p95

__all__ = [
    "MULTIPLIERS",
    "SCOPES",
    "AlertThresholds",
    "Budget",
    "BudgetAlert",
    "BudgetConfig",
    "BudgetConfigError",
    "BudgetMonitor",
    "BudgetReport",
    "Complexity",
    "ComplexityAssessment",
    "GroupStats",
    "HardBudgetExceededError",
    "Invocation",
    "Profile",
    "RecommendationThresholds",
    "compute_report",
    "default_config",
    "default_config_path",
    "detect_complexity",
    "effective_budget",
    "load_config",
    "p95",
    "parse_config",
    "resolve_config",
    "usable_cap",
]
