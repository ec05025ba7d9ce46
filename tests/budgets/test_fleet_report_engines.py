"""`budgets report` over many ledgers: usage, alert and bump records written by the project's
Ledger on three rotated, gzipped shards, read by the python and the DuckDB engine; both
give the figures this file computes from what it wrote (nearest-rank p95, exceedance,
alerts by level, bumps, blocked, an agent's latest profile)."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from compactor.budgets import default_config
from compactor.budgets._cli import fleet_report
from compactor.ledger import Ledger
from compactor.ledger._fleet import Fleet, expand_ledgers

pytest.importorskip("duckdb")

START = datetime(2025, 5, 10, 20, 0, tzinfo=timezone.utc)
#: agent -> (profile it starts with, budget tokens, usage range as shares of the budget)
AGENTS = {"test-runner": ("specialist-narrow", 20_000, (0.3, 1.3)),
          "feature-dev": ("specialist-broad", 50_000, (0.1, 0.45)),
          "coordinator": ("role-coordinator", 100_000, (0.6, 1.05))}


def write_fleet(root: Path, shards: int = 3, per_shard: int = 120,
                seed: int = 5) -> list[dict[str, Any]]:
    """Write the records a BudgetMonitor writes (plus some that are not ours) on `shards`
    ledgers; return the usage, alert and bump records the report must count."""
    rnd = random.Random(seed)
    kept: list[dict[str, Any]] = []
    for shard in range(shards):
        at = [START + timedelta(seconds=shard)]

        def clock() -> datetime:
            at[0] += timedelta(minutes=17)      # every record 17 minutes after the last
            return at[0]

        with Ledger(root / f"host-{shard}" / "ledger.jsonl", rotate_bytes=3_000,
                    fsync="never", clock=clock) as ledger:
            for _ in range(per_shard):
                agent = rnd.choice(list(AGENTS))
                profile, budget, (lo, hi) = AGENTS[agent]
                if agent == "coordinator" and at[0] > START + timedelta(hours=20):
                    profile = "role-architect"          # its latest profile changes
                tokens = int(budget * rnd.uniform(lo, hi))
                blocked = rnd.choice([0, 0, 0, 1, 2, -1, True])
                common = {"agent_id": agent, "session_id": f"s-{rnd.randint(1, 9)}",
                          "profile": profile}
                for level, share in (("info", 0.75), ("warning", 0.9), ("critical", 1.0)):
                    if tokens >= math.ceil(share * budget):
                        ledger.emit("budget_alert", {**common, "level": level})
                        kept.append({"event": "budget_alert", "level": level, **common})
                if tokens > budget and rnd.random() < 0.5:
                    ledger.emit("budget_bump", common)
                    kept.append({"event": "budget_bump", **common})
                ledger.emit("usage", {**common, "tokens": tokens, "budget_tokens": budget,
                                      "blocked": blocked})
                kept.append({"event": "usage", "tokens": tokens, "budget": budget,
                             "blocked": blocked, "at": at[0], **common})
                # not ours, skipped by the report: wrong types, no budget, a numeric agent
                odd = rnd.choice([{"tokens": float(tokens), "budget_tokens": budget},
                                  {"tokens": tokens, "budget_tokens": 0},
                                  {"tokens": str(tokens), "budget_tokens": budget},
                                  {"tokens": tokens, "budget_tokens": True}])
                ledger.emit("usage", {**common, **odd})
                ledger.emit("usage", {**common, "agent_id": 42, "tokens": 1,
                                      "budget_tokens": 10})
                ledger.emit("budget_alert", {**common, "level": "panic"})
    return kept


def expected_rows(kept: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Per `key` ("profile" or "agent_id"): the figures docs/budgets.md defines."""
    rows: dict[str, dict[str, Any]] = {}
    latest: dict[str, tuple[datetime, str]] = {}
    for r in kept:
        row = rows.setdefault(r[key], {"usages": [], "exceeded": 0, "blocked": 0, "bumps": 0,
                                       "alerts": {"info": 0, "warning": 0, "critical": 0}})
        if r["event"] == "usage":
            row["usages"].append(r["tokens"] / r["budget"])
            row["exceeded"] += r["tokens"] > r["budget"]
            b = r["blocked"]
            row["blocked"] += b if type(b) is int and b > 0 else 0
            if r["agent_id"] not in latest or r["at"] > latest[r["agent_id"]][0]:
                latest[r["agent_id"]] = (r["at"], r["profile"])
        elif r["event"] == "budget_alert":
            row["alerts"][r["level"]] += 1
        else:
            row["bumps"] += 1
    out = {}
    for name, row in rows.items():
        u = sorted(row["usages"])
        n = len(u)
        p95 = u[max(1, math.ceil(0.95 * n)) - 1]
        rate = row["exceeded"] / n
        out[name] = {
            # docs/budgets.md: usages summed in units of 1e-12 (half up) for the average
            "invocations": n,
            "avg_usage_pct": round(100 * sum(math.floor(x * 1e12 + 0.5) for x in u)
                                   / (10**12 * n), 4),
            "p95_usage_pct": round(100 * p95, 4), "max_usage_pct": round(100 * u[-1], 4),
            "exceeded": row["exceeded"], "exceedance_rate": round(rate, 6),
            "alerts": row["alerts"], "bumps": row["bumps"], "blocked": row["blocked"],
            "profile": name if key == "profile" else latest[name][1],
            "recommendation": ("none" if n < 20 else "upgrade" if rate > 0.20
                               else "downgrade" if p95 < 0.50 else "keep")}
    return out


def report(root: Path, engine: str, **kw: Any) -> dict[str, Any]:
    paths = expand_ledgers([str(root / "host-*" / "ledger.jsonl*")])
    return fleet_report(Fleet(tuple(paths)), engine, default_config(), **kw).to_dict()


def _pick(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, dict[str, Any]]:
    return {r["name"]: {k: r[k] for k in keys} for r in rows}


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_each_engine_reports_what_was_written(tmp_path, engine):
    """Per profile and per agent, each engine's figures and recommendation verbs equal the ones computed from the written records."""
    kept = write_fleet(tmp_path)
    assert len(list(tmp_path.glob("host-*/*.jsonl.gz"))) >= 6
    got = report(tmp_path, engine)
    keys = list(next(iter(expected_rows(kept, "profile").values())))
    assert got["invocations"] == sum(r["event"] == "usage" for r in kept)
    assert _pick(got["by_profile"], keys) == expected_rows(kept, "profile")
    assert _pick(got["by_agent"], keys) == expected_rows(kept, "agent_id")


def test_both_engines_give_the_same_report_with_a_chart_and_an_agent_filter(tmp_path):
    """The whole JSON report (order, suggestions, reasons) is the same from both engines, for all agents, one agent, and with the chart's usages."""
    write_fleet(tmp_path, seed=9)
    assert report(tmp_path, "python") == report(tmp_path, "duckdb")
    one_p = report(tmp_path, "python", agent="coordinator")
    assert one_p == report(tmp_path, "duckdb", agent="coordinator")
    assert [r["name"] for r in one_p["by_agent"]] == ["coordinator"]
    paths = tuple(expand_ledgers([str(tmp_path / "host-*" / "ledger.jsonl*")]))
    charted = fleet_report(Fleet(paths), "duckdb", default_config(), usages=True)
    plain = fleet_report(Fleet(paths), "python", default_config())
    assert {g.name: sorted(g.usages) for g in charted.by_profile} == \
        {g.name: sorted(g.usages) for g in plain.by_profile}
