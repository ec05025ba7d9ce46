"""``compactor budgets show|check|estimate|report``: argparse wiring and handlers.

``add_budget_commands(subparsers)`` adds the ``budgets`` command. Each handler is
``func(args) -> int``. Exit codes: 0 success; 2 a bad config (one line on stderr, the
format of every ``compactor`` command: ``compactor: error: FILE: KEY: problem; fix: ...``),
no ledger at the path (or a folder there, or an unreadable one), or a bad ``--since``.
The config is ``--config``, else ``$COMPACTOR_BUDGETS``, else the shipped
``compactor/data/budgets.toml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

from .._errors import CompactorError
from ..ledger._cli import (DEFAULT_LEDGER, LEDGER_ENV, add_engine_option, fleet_paths,
                           fleet_problem)
from ..ledger._fleet import Fleet, choose_engine
from ..ledger._stats import parse_since
from ._complexity import MULTIPLIERS
from ._config import CONFIG_ENV, BudgetConfig, resolve_config
from ._monitor import BudgetMonitor
from ._report import (CHART_SQL, LEVELS, BudgetReport, GroupStats, compute_report,
                      report_from_rows, report_sql)

def _fail(message: str) -> int:
    print(f"compactor: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn any :class:`CompactorError` (a bad config above all) into one line on stderr
    and exit code 2, never a traceback."""
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CompactorError as e:
            return _fail(str(e))
        except BrokenPipeError:
            raise
        except OSError as e:   # --chart into a missing folder, an unreadable config...
            from ..cli import os_error_line
            return _fail(os_error_line(e))
    run.__doc__ = func.__doc__
    return run


def _console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, width=max(170, Console(file=sys.stdout).width))


def config_to_dict(cfg: BudgetConfig) -> dict[str, Any]:
    """The config as plain JSON data (``budgets show --json``)."""
    return {"source": cfg.source, "default_profile": cfg.default_profile,
            "enforcement": cfg.enforcement,
            "alerts": dict((lv, s) for lv, s in cfg.alerts.levels()),
            "recommendations": vars(cfg.recommendations),
            "profiles": {p.name: {"budget_tokens": p.budget_tokens, "weights": dict(p.weights),
                                  "description": p.description,
                                  "by_complexity": {c.value: round(p.budget_tokens * m)
                                                    for c, m in MULTIPLIERS.items()}}
                         for p in cfg.profiles.values()},
            "agents": dict(cfg.agents)}


def cmd_show(args: argparse.Namespace) -> int:
    """Print the profiles: budget per complexity level, scope weights, agents."""
    cfg = resolve_config(args.config)
    if args.json:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0
    from rich.table import Table

    t = Table(title=f"Budget profiles ({cfg.source}); enforcement {cfg.enforcement}, "
                    f"default profile {cfg.default_profile or '(none)'}")
    t.add_column("profile", no_wrap=True)
    for c in MULTIPLIERS:
        t.add_column(f"{c.value} x{c.multiplier:g}", justify="right", no_wrap=True)
    t.add_column("weights g/r/p", no_wrap=True)
    t.add_column("agents")
    for p in cfg.profiles.values():
        w = "/".join(f"{p.weights.get(s, 0.0):.2f}" for s in ("global", "recent", "patterns"))
        agents = ", ".join(a for a, name in cfg.agents.items() if name == p.name) or "-"
        t.add_row(p.name, *(f"{round(p.budget_tokens * m):,}" for m in MULTIPLIERS.values()),
                  w, agents)
    con = _console()
    con.print(t)
    levels = ", ".join(f"{lv} {100 * s:g}%" for lv, s in cfg.alerts.levels())
    r = cfg.recommendations
    con.print(f"alerts: {levels}; upgrade when exceedance > {r.upgrade_exceedance_rate:.0%}, "
              f"downgrade when p95 < {r.downgrade_p95_usage:.0%} "
              f"(min {r.min_invocations} invocations)", highlight=False)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config: ``OK: FILE: N profiles, M agents, enforcement E`` (exit 0)."""
    cfg = resolve_config(args.config)
    print(f"OK: {cfg.source}: {len(cfg.profiles)} profiles, {len(cfg.agents)} agents, "
          f"enforcement {cfg.enforcement}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    """Print a task's detected complexity, its reasons, and the agent's effective budget."""
    cfg = resolve_config(args.config)
    budget, a = BudgetMonitor(cfg).budget_for(args.agent, task=args.task,
                                              complexity=args.complexity, model=args.model,
                                              max_tokens=args.max_tokens)
    if args.json:
        print(json.dumps({"complexity": a.level.value, "multiplier": a.multiplier,
                          "score": a.score, "source": a.source, "reasons": list(a.reasons),
                          "profile": budget.profile, "profile_tokens": budget.profile_tokens,
                          "budget_tokens": budget.tokens, "cap_tokens": budget.cap_tokens,
                          "scopes": dict(budget.scopes)}, indent=2))
        return 0
    print(f"complexity: {a.level.value} (x{a.multiplier:g}, score {a.score}, {a.source})")
    for reason in a.reasons:
        print(f"  {reason}")
    cap = f", capped at {budget.cap_tokens:,}" if budget.capped else ""
    print(f"budget: {budget.tokens:,} tokens = {budget.profile} {budget.profile_tokens:,} "
          f"x {budget.multiplier:g}{cap}")
    print("scopes: " + ", ".join(f"{s} {n:,}" for s, n in budget.scopes.items()))
    return 0


def _rec(g: GroupStats) -> str:
    target = f" -> {g.suggested_profile}" if g.suggested_profile else ""
    return f"{g.recommendation}{target}"


def print_report(report: BudgetReport, source: str) -> None:
    """Render a :class:`BudgetReport` as two rich tables on stdout."""
    from rich.table import Table

    con = _console()
    since = f" since {report.since}" if report.since else ""
    who = f", agent {report.agent}" if report.agent else ""
    con.print(f"Budget report: {source}{since}{who}: {report.invocations} invocations",
              highlight=False)
    for title, rows in (("per profile", report.by_profile), ("per agent", report.by_agent)):
        t = Table(title=title)
        t.add_column("agent" if title == "per agent" else "profile", no_wrap=True)
        if title == "per agent":
            t.add_column("profile", no_wrap=True)
        for col in ("invocations", "avg %", "p95 %", "exceeded", "info", "warning",
                    "critical", "bumps", "blocked"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("recommendation", no_wrap=True)
        for g in rows:
            head = [g.name, g.profile or "-"] if title == "per agent" else [g.name]
            t.add_row(*head, str(g.invocations), f"{g.avg_usage_pct:.1f}",
                      f"{g.p95_usage_pct:.1f}", f"{g.exceeded} ({g.exceedance_rate:.1%})",
                      *(str(g.alerts[lv]) for lv in LEVELS), str(g.bumps), str(g.blocked),
                      _rec(g))
        con.print(t)
    r = report.thresholds
    con.print(f"usage = peak request tokens / effective budget; exceeded = over 100%; "
              f"upgrade when exceeded > {r.upgrade_exceedance_rate:.0%} of invocations, "
              f"downgrade when p95 < {r.downgrade_p95_usage:.0%}, none under "
              f"{r.min_invocations} invocations", highlight=False)


def fleet_report(fleet: Fleet, engine: str, config: BudgetConfig, *,
                 thresholds: Any = None, agent: str | None = None,
                 usages: bool = False) -> BudgetReport:
    """The :class:`BudgetReport` of every ledger of ``fleet`` together, by ``engine``
    (``"duckdb"``: :func:`report_sql`'s statements; ``"python"``: the reader and
    :func:`compute_report`); the same figures either way. ``usages=True`` also fills each
    profile's ``usages`` (for a chart; the python fold always does).

    Raises:
        MissingExtraError: ``engine`` is ``"duckdb"`` and duckdb is not installed.
        OSError: a segment cannot be read.
    """
    since = fleet.since.isoformat() if fleet.since else None
    if engine == "duckdb":
        statements = report_sql(agent) + ([CHART_SQL] if usages else [])
        return report_from_rows(fleet.query(*statements), config, thresholds=thresholds,
                                agent=agent, since=since)
    return compute_report(fleet.records(), config, thresholds=thresholds, agent=agent,
                          since=since)


def cmd_report(args: argparse.Namespace) -> int:
    """Usage per profile and per agent from the ledgers named, with recommendations."""
    cfg = resolve_config(args.config)
    paths, label = fleet_paths(args)
    for path in paths:
        if path.is_dir():
            return _fail(f"cannot read the ledger at {path} (it is a folder); fix: pass the "
                         f"ledger's active file (e.g. {DEFAULT_LEDGER}) with --ledger or "
                         f"{LEDGER_ENV}, or a pattern such as --ledger 'hosts/*/ledger.jsonl*'")
    bad = fleet_problem(paths)
    if bad is not None:
        return _fail(bad)
    since = None
    if args.since:
        try:
            since = parse_since(args.since, datetime.now(timezone.utc))
        except ValueError as e:
            return _fail(str(e))
    t = cfg.recommendations
    overrides = {k: v for k, v in (("upgrade_exceedance_rate", args.upgrade_above),
                                   ("downgrade_p95_usage", args.downgrade_below),
                                   ("min_invocations", args.min_invocations)) if v is not None}
    engine = choose_engine(args.engine)
    try:
        report = fleet_report(Fleet(tuple(paths), since), engine, cfg,
                              thresholds=replace(t, **overrides), agent=args.agent,
                              usages=bool(args.chart))
    except OSError as e:    # e.g. a segment is unreadable
        where = e.filename if isinstance(e.filename, str) else label
        return _fail(f"cannot read the ledger at {where} ({e.strerror or e}); fix: pass the "
                     f"ledger's active file (e.g. {DEFAULT_LEDGER}) with --ledger or "
                     f"{LEDGER_ENV}")
    if args.chart:
        from ._chart import write_chart

        write_chart(report, args.chart, alerts=cfg.alerts)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, label)
        if args.chart:
            print(f"chart: {args.chart}")
    return 0


def _share(text: str) -> float:
    """A share: ``0.2`` or ``20%``."""
    try:
        v = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share (e.g. 0.2 or 20%)") from None
    if not 0 <= v <= 2:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0..2)")
    return v


def _positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return v


def _non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return v


def add_budget_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``budgets`` (``show``, ``check``, ``estimate``, ``report``) to ``subparsers``
    (what ``ArgumentParser.add_subparsers()`` returns). Returns the ``budgets`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "budgets", help="token budget profiles: show, check, estimate, report",
        description="Token budget profiles per agent, and the usage report from the ledger.")

    def no_command(args: argparse.Namespace) -> int:
        return _fail("budgets: choose a command: show, check, estimate or report; fix: e.g. "
                     "compactor budgets show (see compactor budgets --help)")

    parser.set_defaults(func=no_command)
    sub = parser.add_subparsers(dest="budgets_command", metavar="{show,check,estimate,report}")

    def child(name: str, help_text: str, func: Callable[[argparse.Namespace], int]
              ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", metavar="FILE", default=None,
                       help=f"budgets TOML file (default: ${CONFIG_ENV}, else the shipped one)")
        p.set_defaults(func=_guarded(func))
        return p

    show = child("show", "print the profiles, their budgets per complexity and agents", cmd_show)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    child("check", "validate a budgets file (exit 2 with one line naming the key)", cmd_check)

    est = child("estimate", "detect a task's complexity and print the agent's budget",
                cmd_estimate)
    est.add_argument("task", help="the task text")
    est.add_argument("--agent", help="the agent id (its profile; default profile otherwise)")
    est.add_argument("--complexity", choices=[c.value for c in MULTIPLIERS],
                     help="override the detected complexity")
    est.add_argument("--model", help="cap the budget by this model's usable window")
    est.add_argument("--max-tokens", type=_non_negative_int, default=0,
                     help="output tokens reserved")
    est.add_argument("--json", action="store_true", help="print one JSON object")

    rep = child("report", "usage per profile and agent from the ledger, with recommendations",
                cmd_report)
    rep.add_argument("--ledger", metavar="PATH", action="extend", nargs="+", default=None,
                     help=f"the ledger file (default: ${LEDGER_ENV}, else {DEFAULT_LEDGER}); "
                          "several files, repeated --ledger or a quoted glob pattern for many "
                          "ledgers")
    rep.add_argument("--since", metavar="WHEN", help="only records since WHEN: 30d, 12h, 2w "
                     "or an ISO date")
    rep.add_argument("--agent", metavar="A", help="only this agent")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.add_argument("--chart", metavar="PNG", help="also write a usage chart (matplotlib)")
    rep.add_argument("--upgrade-above", type=_share, metavar="RATE",
                     help="upgrade when the exceedance rate is above RATE (default: config)")
    rep.add_argument("--downgrade-below", type=_share, metavar="SHARE",
                     help="downgrade when p95 usage is below SHARE (default: config)")
    rep.add_argument("--min-invocations", type=_positive_int, metavar="N",
                     help="no recommendation below N invocations (default: config)")
    add_engine_option(rep)
    return parser
