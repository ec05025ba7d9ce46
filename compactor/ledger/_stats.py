"""Ledger statistics: a pure fold over records (no I/O), used by ``compactor ledger stats``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

NO_AGENT = "(none)"
"""The ``by_agent`` key of records whose ``agent_id`` is null."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class Totals:
    """Counters over a set of records.

    Attributes:
        compactions: ``compaction`` records.
        tokens_saved: sum of ``tokens_before - tokens_after`` over compaction records
            (tokens; records missing either count are skipped).
        cost_usd: sum of ``cost_usd`` over compaction records (US dollars): what
            summarizing cost.
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

    def add(self, record: Mapping[str, Any]) -> None:
        event = record.get("event")
        if event == "compaction":
            self.compactions += 1
            before, after = record.get("tokens_before"), record.get("tokens_after")
            if (isinstance(before, int) and isinstance(after, int)
                    and not isinstance(before, bool) and not isinstance(after, bool)):
                self.tokens_saved += before - after
            cost = record.get("cost_usd")
            if isinstance(cost, (int, float)) and not isinstance(cost, bool):
                self.cost_usd += cost
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
            "since": self.since, "records": self.records, "total": asdict(self.total),
            "by_agent": {k: asdict(v) for k, v in self.by_agent.items()},
            "by_day": {k: asdict(v) for k, v in self.by_day.items()},
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
    stats.by_agent = dict(sorted(by_agent.items()))
    stats.by_day = dict(sorted(by_day.items()))
    return stats


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
