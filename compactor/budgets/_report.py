"""The budget report: a pure fold over ledger records (no I/O).

Inputs are the ``usage``, ``budget_alert`` and ``budget_bump`` records a
:class:`~compactor.budgets.BudgetMonitor` writes. For each profile (the profile an
invocation *started* with) and each agent:

* ``invocations``: ``usage`` records;
* usage of one invocation = ``tokens / budget_tokens`` (its peak request against its
  effective budget); ``avg_usage_pct`` the mean and ``p95_usage_pct`` the 95th percentile
  (nearest rank: the ``ceil(0.95 n)``-th smallest), both in percent;
* ``exceeded``: invocations with ``tokens > budget_tokens``; ``exceedance_rate`` their share;
* ``alerts``: ``budget_alert`` records by ``level``; ``bumps``: ``budget_bump`` records;
  ``blocked``: the sum of the usage records' ``blocked`` (hard-mode refusals);
* ``recommendation``: ``upgrade`` when ``exceedance_rate > upgrade_exceedance_rate``,
  else ``downgrade`` when ``p95 < downgrade_p95_usage``, else ``keep``; ``none`` below
  ``min_invocations`` (thresholds from the config's ``[recommendations]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ._config import BudgetConfig, RecommendationThresholds

LEVELS = ("info", "warning", "critical")
NO_AGENT = "(none)"


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile: the ``ceil(0.95 n)``-th smallest value (0 if empty)."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[max(1, math.ceil(0.95 * len(s))) - 1]


@dataclass
class GroupStats:
    """Usage of one profile or one agent.

    Attributes:
        name: the profile or agent id.
        profile: the profile (for an agent: the one of its latest invocation).
        invocations / exceeded / bumps / blocked: counts.
        usages: each invocation's usage, as a share of its budget (1.0 = 100%).
        alerts: level -> count of ``budget_alert`` records.
        recommendation: ``upgrade`` / ``downgrade`` / ``keep`` / ``none``.
        suggested_profile: the profile one step up or down, when there is one.
        reason: why, in words.
    """

    name: str
    profile: str | None = None
    invocations: int = 0
    exceeded: int = 0
    bumps: int = 0
    blocked: int = 0
    usages: list[float] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=lambda: {lv: 0 for lv in LEVELS})
    recommendation: str = "none"
    suggested_profile: str | None = None
    reason: str = ""

    @property
    def avg_usage_pct(self) -> float:
        return 100 * sum(self.usages) / len(self.usages) if self.usages else 0.0

    @property
    def p95_usage_pct(self) -> float:
        return 100 * p95(self.usages)

    @property
    def exceedance_rate(self) -> float:
        return self.exceeded / self.invocations if self.invocations else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "profile": self.profile, "invocations": self.invocations,
                "avg_usage_pct": round(self.avg_usage_pct, 4),
                "p95_usage_pct": round(self.p95_usage_pct, 4),
                "max_usage_pct": round(100 * max(self.usages, default=0.0), 4),
                "exceeded": self.exceeded, "exceedance_rate": round(self.exceedance_rate, 6),
                "alerts": dict(self.alerts), "bumps": self.bumps, "blocked": self.blocked,
                "recommendation": self.recommendation,
                "suggested_profile": self.suggested_profile, "reason": self.reason}


@dataclass
class BudgetReport:
    """Per-profile and per-agent usage (see the module docstring for definitions)."""

    by_profile: list[GroupStats]
    by_agent: list[GroupStats]
    thresholds: RecommendationThresholds
    invocations: int = 0
    since: str | None = None
    agent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        t = self.thresholds
        return {"since": self.since, "agent": self.agent, "invocations": self.invocations,
                "thresholds": {"upgrade_exceedance_rate": t.upgrade_exceedance_rate,
                               "downgrade_p95_usage": t.downgrade_p95_usage,
                               "min_invocations": t.min_invocations},
                "by_profile": [g.to_dict() for g in self.by_profile],
                "by_agent": [g.to_dict() for g in self.by_agent]}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _recommend(g: GroupStats, config: BudgetConfig, t: RecommendationThresholds) -> None:
    if g.invocations < t.min_invocations:
        g.recommendation, g.reason = "none", (f"{g.invocations} invocations < "
                                              f"{t.min_invocations} needed")
        return
    known = (g.profile or "") in config.profiles
    if g.exceedance_rate > t.upgrade_exceedance_rate:
        up = config.next_up(g.profile or "")
        g.recommendation, g.suggested_profile = "upgrade", up.name if up else None
        g.reason = (f"exceeded in {g.exceedance_rate:.1%} > {t.upgrade_exceedance_rate:.0%}"
                    + ("" if up else "; largest profile: raise its budget_tokens" if known
                       else f"; profile {g.profile!r} is not in the config"))
    elif p95(g.usages) < t.downgrade_p95_usage:
        down = config.next_down(g.profile or "")
        g.recommendation, g.suggested_profile = "downgrade", down.name if down else None
        g.reason = (f"p95 usage {g.p95_usage_pct:.1f}% < {t.downgrade_p95_usage:.0%}"
                    + ("" if down else "; smallest profile: lower its budget_tokens" if known
                       else f"; profile {g.profile!r} is not in the config"))
    else:
        g.recommendation, g.reason = "keep", "within thresholds"


def compute_report(records: Iterable[Mapping[str, Any]], config: BudgetConfig, *,
                   thresholds: RecommendationThresholds | None = None,
                   agent: str | None = None, since: str | None = None) -> BudgetReport:
    """Fold ledger records into a :class:`BudgetReport` (pure).

    ``agent`` keeps only that agent's records. ``usage`` records without an integer
    ``budget_tokens > 0`` and ``tokens >= 0``, and any record whose ``agent_id`` is not a
    string or null, are skipped (they are not ours); a ``profile`` that is not a string
    counts as ``(unknown)``.
    """
    t = thresholds or config.recommendations
    profiles: dict[str, GroupStats] = {}
    agents: dict[str, GroupStats] = {}
    total = 0

    def groups(r: Mapping[str, Any], profile_key: str) -> list[GroupStats]:
        a = r.get("agent_id") or NO_AGENT
        p = r.get(profile_key)
        p = p if isinstance(p, str) and p else "(unknown)"
        ga = agents.setdefault(a, GroupStats(a))
        return [profiles.setdefault(p, GroupStats(p, p)), ga]

    for r in records:
        if agent is not None and r.get("agent_id") != agent:
            continue
        if not isinstance(r.get("agent_id"), (str, type(None))):
            continue                    # not a record of ours: an agent id is a string
        event = r.get("event")
        if event == "usage":
            budget, tokens = _int(r.get("budget_tokens")), _int(r.get("tokens"))
            if budget is None or budget <= 0 or tokens is None or tokens < 0:
                continue
            total += 1
            gp, ga = groups(r, "profile")
            for g in (gp, ga):
                g.invocations += 1
                g.usages.append(tokens / budget)
                g.exceeded += tokens > budget
                g.blocked += max(0, _int(r.get("blocked")) or 0)
            ga.profile = gp.name
        elif event == "budget_alert" and r.get("level") in LEVELS:
            for g in groups(r, "profile"):
                g.alerts[r["level"]] += 1
        elif event == "budget_bump":
            for g in groups(r, "profile"):
                g.bumps += 1
    order = list(config.profiles)
    by_profile = sorted(profiles.values(),
                        key=lambda g: (order.index(g.name) if g.name in order else len(order),
                                       g.name))
    by_agent = sorted(agents.values(), key=lambda g: g.name)
    for g in (*by_profile, *by_agent):
        _recommend(g, config, t)
    return BudgetReport(by_profile, by_agent, t, total, since, agent)
