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
  ``min_invocations`` (thresholds from the config's ``[recommendations]``);
* an agent's ``profile``: the profile of its latest ``usage`` record (greatest ``ts``; on
  equal ``ts`` the greater profile name), so the answer does not depend on the order the
  ledgers of a fleet are read in.

Two folds fill the same :class:`BudgetReport`: :func:`compute_report` over records (the
python engine) and :func:`report_from_rows` over the rows of :func:`report_sql`'s statements
(the DuckDB engine, ``compactor.ledger._fleet``); both end in the same ordering and
recommendations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ._config import BudgetConfig, RecommendationThresholds

LEVELS = ("info", "warning", "critical")
NO_AGENT = "(none)"

USAGE_UNIT = 1_000_000_000_000
"""Usages (shares of a budget) are summed in units of 1e-12 for the average: integers add
up exactly in any order, float sums differ in their last bits from engine to engine."""


def usage_units(share: float) -> int:
    """``floor(share * 1e12 + 0.5)``: a usage share in whole :data:`USAGE_UNIT` units, half
    up; the same two IEEE double operations the DuckDB engine's SQL makes."""
    return math.floor(share * 1e12 + 0.5)


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
        usage_units: the sum of the invocations' usages in :data:`USAGE_UNIT` units (each
            usage rounded half up to a whole unit, see :func:`usage_units`; an exact integer
            sum, so every engine reaches the same average).
        usage_p95: the nearest-rank 95th percentile of the usages (a share).
        usage_max: the largest usage (a share; 0.0 without invocations).
        usages: each invocation's usage, as a share of its budget (1.0 = 100%); filled by
            the python fold, and by the DuckDB engine only for a chart.
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
    usage_units: int = 0
    usage_p95: float = 0.0
    usage_max: float = 0.0
    usages: list[float] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=lambda: {lv: 0 for lv in LEVELS})
    recommendation: str = "none"
    suggested_profile: str | None = None
    reason: str = ""

    @property
    def avg_usage_pct(self) -> float:
        return (100 * self.usage_units / (USAGE_UNIT * self.invocations)
                if self.invocations else 0.0)

    @property
    def p95_usage_pct(self) -> float:
        return 100 * self.usage_p95

    @property
    def exceedance_rate(self) -> float:
        return self.exceeded / self.invocations if self.invocations else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "profile": self.profile, "invocations": self.invocations,
                "avg_usage_pct": round(self.avg_usage_pct, 4),
                "p95_usage_pct": round(self.p95_usage_pct, 4),
                "max_usage_pct": round(100 * self.usage_max, 4),
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
    elif g.usage_p95 < t.downgrade_p95_usage:
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
    profiles: dict[str, GroupStats] = {}
    agents: dict[str, GroupStats] = {}
    latest: dict[str, tuple[str, str]] = {}
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
            mark = (str(r.get("ts", "")), gp.name)
            if ga.name not in latest or mark > latest[ga.name]:
                latest[ga.name] = mark
        elif event == "budget_alert" and r.get("level") in LEVELS:
            for g in groups(r, "profile"):
                g.alerts[r["level"]] += 1
        elif event == "budget_bump":
            for g in groups(r, "profile"):
                g.bumps += 1
    for g in (*profiles.values(), *agents.values()):
        g.usage_units = sum(usage_units(u) for u in g.usages)
        g.usage_p95 = p95(g.usages)
        g.usage_max = max(g.usages, default=0.0)
    for name, (_, profile) in latest.items():
        agents[name].profile = profile
    return _finish(profiles, agents, config, thresholds, total, since, agent)


def _finish(profiles: dict[str, GroupStats], agents: dict[str, GroupStats],
            config: BudgetConfig, thresholds: RecommendationThresholds | None, total: int,
            since: str | None, agent: str | None) -> BudgetReport:
    """Order the groups (profiles in config order, then unknown ones by name; agents by
    name) and make the recommendations: the one ending both engines share."""
    t = thresholds or config.recommendations
    order = list(config.profiles)
    by_profile = sorted(profiles.values(),
                        key=lambda g: (order.index(g.name) if g.name in order else len(order),
                                       g.name))
    by_agent = sorted(agents.values(), key=lambda g: g.name)
    for g in (*by_profile, *by_agent):
        _recommend(g, config, t)
    return BudgetReport(by_profile, by_agent, t, total, since, agent)


def report_sql(agent: str | None = None) -> list[str]:
    """The DuckDB statements of the report, over the ``records`` view of
    ``compactor.ledger._fleet`` (fields typed JSON), with the rules of
    :func:`compute_report`. The first builds a temporary table; the others return, in
    order: per-group usage rows ``(kind 'p'|'a', name, invocations, usage_units, usage_max,
    usage_p95, exceeded, blocked)``, alert rows ``(profile, agent, level, count)``, bump rows
    ``(profile, agent, count)``, latest-profile rows ``(agent, profile)``, total invocations
    ``(n,)``; then, for a chart, ``(profile, [usage, ...])``."""
    only = "" if agent is None else (
        " AND json_type(agent_id) = 'VARCHAR' AND (agent_id->>'$') = '"
        + agent.replace("'", "''") + "'")
    base = f"""
CREATE TEMP TABLE b AS
SELECT ev, t,
       CASE WHEN json_type(agent_id) = 'VARCHAR' AND (agent_id->>'$') <> ''
            THEN agent_id->>'$' ELSE '{NO_AGENT}' END AS a,
       CASE WHEN json_type(profile) = 'VARCHAR' AND (profile->>'$') <> ''
            THEN profile->>'$' ELSE '(unknown)' END AS p,
       CASE WHEN ev = 'usage'
            THEN TRY_CAST(tokens AS DOUBLE) / TRY_CAST(budget_tokens AS DOUBLE) END AS u,
       CASE WHEN ev = 'usage'
            THEN TRY_CAST(tokens AS HUGEINT) > TRY_CAST(budget_tokens AS HUGEINT) END AS exc,
       CASE WHEN ev = 'usage' AND json_type(blocked) IN ('BIGINT', 'UBIGINT')
            THEN greatest(TRY_CAST(blocked AS HUGEINT), 0) ELSE 0 END AS blk,
       CASE WHEN ev = 'budget_alert' THEN level->>'$' END AS lv
FROM records
WHERE (agent_id IS NULL OR json_type(agent_id) = 'VARCHAR'){only}
  AND ((ev = 'usage' AND json_type(budget_tokens) IN ('BIGINT', 'UBIGINT')
        AND json_type(tokens) IN ('BIGINT', 'UBIGINT')
        AND TRY_CAST(budget_tokens AS HUGEINT) > 0 AND TRY_CAST(tokens AS HUGEINT) >= 0)
       OR (ev = 'budget_alert' AND json_type(level) = 'VARCHAR'
           AND (level->>'$') IN ('info', 'warning', 'critical'))
       OR ev = 'budget_bump')"""
    groups = []
    for kind, col in (("p", "p"), ("a", "a")):
        groups.append(f"""
SELECT '{kind}', s.name, s.n, s.total, s.top, r.u, s.exc, s.blk
FROM (SELECT {col} AS name, count(*) AS n,
             sum(floor(u * CAST(1e12 AS DOUBLE) + CAST(0.5 AS DOUBLE))::HUGEINT) AS total,
             max(u) AS top,
             count(*) FILTER (WHERE exc) AS exc, sum(blk) AS blk
      FROM b WHERE ev = 'usage' GROUP BY {col}) s
JOIN (SELECT {col} AS name, u,
             row_number() OVER (PARTITION BY {col} ORDER BY u) AS rn,
             count(*) OVER (PARTITION BY {col}) AS n
      FROM b WHERE ev = 'usage') r
  ON r.name = s.name AND r.rn = greatest(1, ceil(0.95 * r.n))""")
    return [base, " UNION ALL ".join(groups),
            "SELECT p, a, lv, count(*) FROM b WHERE ev = 'budget_alert' GROUP BY ALL",
            "SELECT p, a, count(*) FROM b WHERE ev = 'budget_bump' GROUP BY ALL",
            "SELECT a, (max(row(t, p)))[2] FROM b WHERE ev = 'usage' GROUP BY a",
            "SELECT count(*) FROM b WHERE ev = 'usage'"]


#: The chart's extra statement (after :func:`report_sql`'s): every usage per profile.
CHART_SQL = "SELECT p, list(u) FROM b WHERE ev = 'usage' GROUP BY p"


def report_from_rows(results: list[list[tuple[Any, ...]]], config: BudgetConfig, *,
                     thresholds: RecommendationThresholds | None = None,
                     agent: str | None = None, since: str | None = None) -> BudgetReport:
    """A :class:`BudgetReport` from the results of :func:`report_sql`'s statements (pure),
    in their order (the first, a table creation, included; a sixth, :data:`CHART_SQL`'s,
    fills ``usages``). The groups and figures are those :func:`compute_report` finds."""
    _, usage_rows, alert_rows, bump_rows, latest_rows, total_rows, *chart = results
    profiles: dict[str, GroupStats] = {}
    agents: dict[str, GroupStats] = {}

    def group(kind: str, name: str) -> GroupStats:
        if kind == "p":
            return profiles.setdefault(name, GroupStats(name, name))
        return agents.setdefault(name, GroupStats(name))

    for p, a, *_ in (*alert_rows, *bump_rows):     # groups with alerts or bumps only
        group("p", p)
        group("a", a)
    for kind, name, n, total, top, p95_share, exceeded, blocked in usage_rows:
        g = group(kind, name)
        g.invocations, g.usage_units, g.usage_max = int(n), int(total), float(top)
        g.usage_p95, g.exceeded, g.blocked = float(p95_share), int(exceeded), int(blocked or 0)
    for p, a, level, n in alert_rows:
        for g in (group("p", p), group("a", a)):
            g.alerts[level] += int(n)
    for p, a, n in bump_rows:
        for g in (group("p", p), group("a", a)):
            g.bumps += int(n)
    for a, p in latest_rows:
        group("a", a).profile = p
    for p, values in (chart[0] if chart else []):
        group("p", p).usages = [float(v) for v in values]
    total = int(total_rows[0][0]) if total_rows else 0
    return _finish(profiles, agents, config, thresholds, total, since, agent)
