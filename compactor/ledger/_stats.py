"""Ledger statistics: a pure fold over records (no I/O), used by ``compactor ledger stats``."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

NO_AGENT = "(none)"
"""The ``by_agent`` key of records whose ``agent_id`` is null."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

NANO = 1_000_000_000
"""Costs are counted in nano-dollars: each record's ``cost_usd`` becomes the integer
:func:`nano_usd` gives, and those integers are summed exactly, so any engine, summing in
any order, reaches the same figure (float sums would differ in the last bits)."""


def nano_usd(value: float) -> int:
    """``floor(value * 1e9 + 0.5)``: a cost in whole nano-dollars, half up. The same two
    IEEE double operations the DuckDB engine's SQL makes, so both get the same integer."""
    return math.floor(value * 1e9 + 0.5)


@dataclass
class Totals:
    """Counters over a set of records.

    Attributes:
        compactions: ``compaction`` records.
        tokens_saved: sum of ``tokens_before - tokens_after`` over compaction records
            (tokens; records missing either count are skipped).
        cost_usd: sum of ``cost_usd`` over compaction records (US dollars): what
            summarizing cost, each record's cost counted to the nano-dollar (:data:`NANO`;
            finite numbers only).
        summarizer_failures: ``summarizer_fallback`` records.
        retries: ``summarizer_retry`` records.
        budget_alerts: ``budget_alert`` records.
    """

    compactions: int = 0
    tokens_saved: int = 0
    cost_usd: float = 0.0
    summarizer_failures: int = 0
    retries: int = 0
    budget_alerts: int = 0
    cost_nano: int = field(default=0, repr=False, compare=False)

    def add_cost(self, value: float) -> None:
        """Add ``value`` USD (a finite number) to the cost, to the nano-dollar."""
        self.cost_nano += nano_usd(value)
        self.cost_usd = self.cost_nano / NANO

    def merge(self, other: Totals) -> None:
        """Add ``other``'s counters."""
        self.compactions += other.compactions
        self.tokens_saved += other.tokens_saved
        self.cost_nano += other.cost_nano
        self.cost_usd = self.cost_nano / NANO
        self.summarizer_failures += other.summarizer_failures
        self.retries += other.retries
        self.budget_alerts += other.budget_alerts

    def to_dict(self) -> dict[str, Any]:
        """The six counters by name."""
        return {"compactions": self.compactions, "tokens_saved": self.tokens_saved,
                "cost_usd": self.cost_usd, "summarizer_failures": self.summarizer_failures,
                "retries": self.retries, "budget_alerts": self.budget_alerts}

    def add(self, record: Mapping[str, Any]) -> None:
        event = record.get("event")
        if event == "compaction":
            self.compactions += 1
            before, after = record.get("tokens_before"), record.get("tokens_after")
            if (isinstance(before, int) and isinstance(after, int)
                    and not isinstance(before, bool) and not isinstance(after, bool)):
                self.tokens_saved += before - after
            cost = record.get("cost_usd")
            if (isinstance(cost, (int, float)) and not isinstance(cost, bool)
                    and math.isfinite(cost)):
                self.add_cost(cost)
        elif event == "summarizer_fallback":
            self.summarizer_failures += 1
        elif event == "summarizer_retry":
            self.retries += 1
        elif event == "budget_alert":
            self.budget_alerts += 1


@dataclass
class LedgerStats:
    """Totals overall, per agent (``agent_id``, :data:`NO_AGENT` when null) and per UTC
    day (``YYYY-MM-DD``), both sorted by key.

    Attributes:
        since: the ``ts`` lower bound applied, or ``None``.
        records: records counted (all events).
    """

    since: str | None = None
    records: int = 0
    total: Totals = field(default_factory=Totals)
    by_agent: dict[str, Totals] = field(default_factory=dict)
    by_day: dict[str, Totals] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since, "records": self.records, "total": self.total.to_dict(),
            "by_agent": {k: v.to_dict() for k, v in self.by_agent.items()},
            "by_day": {k: v.to_dict() for k, v in self.by_day.items()},
        }


def compute_stats(records: Iterable[Mapping[str, Any]], *, since: str | None = None) -> LedgerStats:
    """Fold ``records`` into :class:`LedgerStats`; ``since`` is only recorded, the caller
    filters (``read_records(path, since=...)`` does)."""
    stats = LedgerStats(since=since)
    by_agent: dict[str, Totals] = {}
    by_day: dict[str, Totals] = {}
    for record in records:
        stats.records += 1
        stats.total.add(record)
        agent = record.get("agent_id")
        key = NO_AGENT if agent is None else str(agent)
        by_agent.setdefault(key, Totals()).add(record)
        by_day.setdefault(str(record.get("ts", ""))[:10], Totals()).add(record)
    return _finish(stats, by_agent, by_day)


def _finish(stats: LedgerStats, by_agent: dict[str, Totals],
            by_day: dict[str, Totals]) -> LedgerStats:
    stats.by_agent = dict(sorted(by_agent.items()))
    stats.by_day = dict(sorted(by_day.items()))
    for t in (stats.total, *stats.by_agent.values(), *stats.by_day.values()):
        t.cost_usd = t.cost_nano / NANO
    return stats


STATS_SQL = """
SELECT CASE WHEN agent_id IS NULL THEN 'n' WHEN json_type(agent_id) = 'VARCHAR' THEN 's'
            ELSE 'j' END AS kind,
       CASE WHEN json_type(agent_id) = 'VARCHAR' THEN agent_id->>'$'
            ELSE agent_id::VARCHAR END AS agent,
       left(t, 10) AS day,
       count(*) AS records,
       count(*) FILTER (WHERE ev = 'compaction') AS compactions,
       sum(CASE WHEN ev = 'compaction'
                 AND json_type(tokens_before) IN ('BIGINT', 'UBIGINT')
                 AND json_type(tokens_after) IN ('BIGINT', 'UBIGINT')
                THEN TRY_CAST(tokens_before AS HUGEINT) - TRY_CAST(tokens_after AS HUGEINT)
           END) AS tokens_saved,
       sum(CASE WHEN ev = 'compaction'
                 AND json_type(cost_usd) IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                THEN floor(TRY_CAST(cost_usd AS DOUBLE) * CAST(1e9 AS DOUBLE)
                           + CAST(0.5 AS DOUBLE))::HUGEINT END) AS cost_nano,
       count(*) FILTER (WHERE ev = 'summarizer_fallback') AS summarizer_failures,
       count(*) FILTER (WHERE ev = 'summarizer_retry') AS retries,
       count(*) FILTER (WHERE ev = 'budget_alert') AS budget_alerts
FROM records GROUP BY ALL
"""
"""The figures of :class:`Totals`, per (agent, day), in SQL over the ``records`` view of
``compactor.ledger._fleet`` (fields typed JSON): the same rules as :meth:`Totals.add`
(integer token counts only, numeric non-bool costs only, in nano-dollars: :func:`nano_usd`)."""


def stats_from_rows(rows: Iterable[tuple[Any, ...]], *, since: str | None = None) -> LedgerStats:
    """:class:`LedgerStats` from the rows of :data:`STATS_SQL` (pure): the per-(agent, day)
    rows are rolled up into the total, per agent and per day, as :func:`compute_stats`
    would have counted them. An agent id that is not a string is keyed ``str()`` of its
    JSON value, as the python fold keys it."""
    stats = LedgerStats(since=since)
    by_agent: dict[str, Totals] = {}
    by_day: dict[str, Totals] = {}
    for (kind, agent, day, records, compactions, saved, nano, failures, retries,
         alerts) in rows:
        key = NO_AGENT if kind == "n" else agent if kind == "s" else str(json.loads(agent))
        part = Totals(compactions=int(compactions), tokens_saved=int(saved or 0),
                      cost_nano=int(nano or 0), summarizer_failures=int(failures),
                      retries=int(retries), budget_alerts=int(alerts))
        stats.records += int(records)
        for t in (stats.total, by_agent.setdefault(key, Totals()),
                  by_day.setdefault(day, Totals())):
            t.merge(part)
    return _finish(stats, by_agent, by_day)


def parse_since(text: str, now: datetime) -> datetime:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` before ``now``, or an ISO date
    (``2025-01-31``, midnight UTC) or datetime (naive means UTC).

    Raises:
        ValueError: ``text`` is none of these.
    """
    text = text.strip()
    m = re.fullmatch(r"(\d+)\s*([smhdw])", text)
    if m:
        return now - timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: use a duration like 30d, 12h, 90m, 2w, or an ISO "
                         "date like 2025-01-31") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
