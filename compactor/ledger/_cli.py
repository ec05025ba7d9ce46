"""``compactor ledger tail|stats|verify``: argparse wiring and handlers.

``add_ledger_commands(subparsers)`` adds the ``ledger`` command to the main parser's
sub-parsers. Each handler is ``func(args) -> int`` (the exit code), stored with
``set_defaults(func=...)``. Exit codes: 0 success; 1 ``verify`` found torn or invalid
lines (that ``--repair`` did not fix); 2 usage errors (no ledger at the path, the path is
a folder or cannot be read, bad ``--since``, no sub-command), one line on stderr:
``compactor: error: PROBLEM; fix: ...``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compactor._errors import CompactorError
from compactor.ledger._codec import COMMON_KEYS
from compactor.ledger._fleet import ENGINES, Fleet, choose_engine, expand_ledgers
from compactor.ledger._reader import follow_records, tail_records
from compactor.ledger._segments import list_segments
from compactor.ledger._stats import (STATS_SQL, LedgerStats, Totals, compute_stats, parse_since,
                                     stats_from_rows)
from compactor.ledger._verify import VerifyReport, verify

LEDGER_ENV = "COMPACTOR_LEDGER"
DEFAULT_LEDGER = "./compactor-ledger/ledger.jsonl"


def ledger_values(args: argparse.Namespace) -> list[str]:
    """Every ``--ledger`` value given (before and after the sub-command), in order; else
    ``[ledger] path`` of ``compactor.toml`` (``$COMPACTOR_LEDGER`` included), else
    ``./compactor-ledger/ledger.jsonl``. Values may be glob patterns."""
    from compactor._config import resolve_ledger_path

    given = getattr(args, "ledger", None)
    values = ([given] if isinstance(given, str) else list(given or [])) + list(
        getattr(args, "ledger_more", None) or [])
    return values or [str(resolve_ledger_path(None))]


def ledger_path(args: argparse.Namespace) -> Path:
    """The one ledger of a command that reads one (``tail``, ``verify``): the
    ``--ledger`` value (a pattern must match exactly one ledger), else the default of
    :func:`ledger_values`.

    Raises:
        ConfigError: several ledgers are named, or a pattern matches none.
    """
    from compactor._errors import ConfigError

    values = ledger_values(args)
    paths = expand_ledgers(values)
    if len(paths) != 1:
        raise ConfigError(f"--ledger {' '.join(values)} names {len(paths)} ledgers and this "
                          "command reads one; fix: pass one ledger (stats and budgets report "
                          "take many)", field="ledger")
    return paths[0] if glob.has_magic(values[0]) else Path(values[0])


def fleet_paths(args: argparse.Namespace) -> tuple[list[Path], str]:
    """The ledgers of a command that reads many (``stats``, ``budgets report``) and a
    label for its title: the path when one was named, else the values and the count.

    Raises:
        NoLedgerMatchError: a pattern matched no ledger file.
    """
    values = ledger_values(args)
    paths = expand_ledgers(values)
    if len(values) == 1 and len(paths) == 1 and paths[0] == Path(os.path.abspath(values[0])):
        return paths, values[0]
    return paths, f"{' '.join(values)} ({len(paths)} ledger{'s' if len(paths) != 1 else ''})"


def fleet_problem(paths: list[Path]) -> str | None:
    """The one-line problem of the first path that holds no ledger (a folder, or no
    active file and no segment), or ``None`` when each may be read."""
    for path in paths:
        if path.is_dir():
            return (f"{os.path.abspath(path)} is a folder, not a ledger file; fix: pass the "
                    f"ledger's file, e.g. --ledger {os.path.join(path, 'ledger.jsonl')}, or a "
                    f"pattern such as --ledger '{os.path.join(path, '*', 'ledger.jsonl*')}'")
        if not _exists(path):
            return missing_ledger_line(path)
    return None


def _exists(path: Path) -> bool:
    return path.exists() or bool(list_segments(Path(os.path.abspath(path))).segments)


def ledger_exists(path: str | os.PathLike[str]) -> bool:
    """Whether a ledger is at ``path``: its active file or any of its segments."""
    return _exists(Path(path))


def missing_ledger_line(path: str | os.PathLike[str]) -> str:
    """The one line every command prints when no ledger is at ``path``."""
    return (f"no ledger at {os.path.abspath(path)}; fix: pass --ledger PATH or set "
            f"{LEDGER_ENV}")


def _error(message: str) -> int:
    print(f"compactor: error: {message}", file=sys.stderr)
    return 2


def _missing(path: Path) -> int:
    return _error(missing_ledger_line(path))


def _check_path(path: Path) -> int | None:
    """Exit code 2 (after one line on stderr) when ``path`` holds no readable ledger
    file; ``None`` when it may be read."""
    if path.is_dir():
        return _error(f"{os.path.abspath(path)} is a folder, not a ledger file; fix: pass the "
                      f"ledger's file, e.g. --ledger {os.path.join(path, 'ledger.jsonl')}")
    if not _exists(path):
        return _missing(path)
    return None


def _unreadable(path: Path, e: OSError) -> int:
    where = e.filename if isinstance(e.filename, str) else os.path.abspath(path)
    return _error(f"{where}: cannot read the ledger ({e.strerror or e}); fix: run as a user "
                  "who may read (for --repair: write) it, or pass another --ledger")


def _guard(func: Any) -> Any:
    """Wrap a command: an ``OSError`` while reading the ledger, or a ``CompactorError``
    (a pattern matching nothing, a missing extra), is one line, exit 2."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except BrokenPipeError:
            raise
        except CompactorError as e:
            return _error(str(e))
        except OSError as e:
            return _unreadable(Path(ledger_values(args)[0]), e)
    run.__doc__ = func.__doc__
    return run


def _dumps(record: Any) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else _dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def format_record(record: dict[str, Any]) -> str:
    """One human-readable line: ``ts  event  agent=.. session=..  key=value ...``."""
    head = (f"{record.get('ts')}  {record.get('event', ''):<19} "
            f"agent={record.get('agent_id') or '-'} session={record.get('session_id') or '-'}")
    rest = " ".join(f"{k}={_short(v)}" for k, v in record.items() if k not in COMMON_KEYS)
    return f"{head}  {rest}" if rest else head


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the last N records (``--json``: one JSON object per line); ``--follow``
    keeps printing new ones until interrupted."""
    path = ledger_path(args)
    if path.is_dir() or not args.follow:
        bad = _check_path(path)
        if bad is not None:
            return bad
    show = _dumps if args.json else format_record
    try:
        # look at the ledger before reading the tail, so nothing appended in between is lost
        follower = follow_records(path, poll_s=args.poll) if args.follow else None
        for record in tail_records(path, args.lines, event=args.event):
            print(show(record), flush=args.follow)
        if follower is not None:
            for record in follower:
                if args.event is None or record.get("event") == args.event:
                    print(show(record), flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    return 0


def _totals_row(label: str, t: Totals) -> list[str]:
    return [label, str(t.compactions), f"{t.tokens_saved:,}", f"{t.cost_usd:.4f}",
            str(t.summarizer_failures), str(t.retries), str(t.budget_alerts)]


def print_stats(stats: LedgerStats, path: Path | str) -> None:
    """Render :class:`LedgerStats` as rich tables on stdout (``path``: the title's label)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=max(100, Console(file=sys.stdout).width))
    since = f" since {stats.since}" if stats.since else ""
    t = stats.total
    summary = Table(title=f"Ledger {path}{since}: {stats.records} records")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for name, value in [("compactions", str(t.compactions)),
                        ("tokens saved", f"{t.tokens_saved:,}"),
                        ("summarizer cost (USD)", f"{t.cost_usd:.4f}"),
                        ("summarizer failures (fallbacks)", str(t.summarizer_failures)),
                        ("summarizer retries", str(t.retries)),
                        ("budget alerts", str(t.budget_alerts))]:
        summary.add_row(name, value)
    console.print(summary)
    for title, rows in (("per agent", stats.by_agent), ("per day (UTC)", stats.by_day)):
        table = Table(title=title)
        for i, col in enumerate(["agent" if title == "per agent" else "day", "compactions",
                                 "tokens saved", "cost USD", "failures", "retries", "alerts"]):
            table.add_column(col, justify="left" if i == 0 else "right")
        for key, totals in rows.items():
            table.add_row(*_totals_row(key, totals))
        console.print(table)


def fleet_stats(fleet: Fleet, engine: str) -> LedgerStats:
    """:class:`LedgerStats` of every ledger of ``fleet`` together, by ``engine``
    (``"duckdb"``: one SQL query, :data:`STATS_SQL`; ``"python"``: the reader and
    :func:`compute_stats`). Both give the same figures.

    Raises:
        MissingExtraError: ``engine`` is ``"duckdb"`` and duckdb is not installed.
        OSError: a segment cannot be read.
    """
    since = fleet.since.isoformat() if fleet.since else None
    if engine == "duckdb":
        (rows,) = fleet.query(STATS_SQL)
        return stats_from_rows(rows, since=since)
    return compute_stats(fleet.records(), since=since)


def cmd_stats(args: argparse.Namespace) -> int:
    """Print compactions, tokens saved, summarizer cost, failures, retries and budget
    alerts, overall, per agent and per day (``--json``: one JSON object), over every
    ledger named."""
    paths, label = fleet_paths(args)
    bad = fleet_problem(paths)
    if bad is not None:
        return _error(bad)
    since = None
    if args.since:
        try:
            since = parse_since(args.since, datetime.now(timezone.utc))
        except ValueError as exc:
            return _error(str(exc))
    stats = fleet_stats(Fleet(tuple(paths), since), choose_engine(args.engine))
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print_stats(stats, label)
    return 0


def print_verify(report: VerifyReport) -> None:
    """Render a :class:`VerifyReport` as plain text on stdout."""
    print(f"ledger: {report.path}")
    print(f"files: {len(report.files)}  records: {report.records}  torn lines: "
          f"{len(report.torn)}  invalid lines: {len(report.invalid)}")
    fixed = {(r.file, r.offset) for r in report.repairs if r.action == "truncate_torn_tail"}
    for bad in report.torn + report.invalid:
        where = "last line" if bad.at_tail else "middle"
        state = "  [repaired]" if (bad.file, bad.offset) in fixed else ""
        print(f"  {bad.kind:<7} {bad.file} @ byte {bad.offset} ({bad.length} bytes, "
              f"{bad.reason}, {where}){state}")
    for name in report.pending:
        print(f"  pending compression: {name}")
    for r in report.repairs:
        extra = f" at byte {r.offset}, {r.length} bytes removed" if r.offset is not None else ""
        print(f"  repaired: {r.action} {r.file}{extra}")
    if report.ok:
        print("status: OK")
    else:
        hint = "" if report.repairs or not any(b.at_tail for b in report.unrepaired) \
            else " (run with --repair to cut a torn last line)"
        print(f"status: PROBLEMS: {len(report.unrepaired)} line(s) not repaired{hint}")


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every line; ``--repair`` cuts torn last lines and finishes compressions.
    Exit 0 when clean (or repaired), 1 when torn or invalid lines remain."""
    path = ledger_path(args)
    bad = _check_path(path)
    if bad is not None:
        return bad
    report = verify(path, repair=args.repair)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_verify(report)
    return 0 if report.ok else 1


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    """``--engine auto|duckdb|python`` (default ``auto``: duckdb when it can be imported)."""
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="how to read the ledgers: duckdb (extra [duckdb]), python (the "
                             "built-in reader) or auto, duckdb when installed (default); "
                             "both give the same figures")


def add_ledger_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ledger`` (with ``tail``, ``stats``, ``verify``) to ``subparsers`` (the
    object ``ArgumentParser.add_subparsers()`` returns). Returns the ``ledger`` parser.

    ``--ledger PATH`` is accepted both before and after the sub-command."""
    from compactor.cli import non_negative_int

    help_path = (f"the ledger file (default: ${LEDGER_ENV}, else {DEFAULT_LEDGER}); stats: "
                 "several files, repeated --ledger or a quoted glob pattern for many ledgers")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ledger", help="inspect and check the JSONL ledger",
        description="Inspect and check the append-only JSONL ledger.")
    parser.add_argument("--ledger", metavar="PATH", action="append", default=None,
                        help=help_path)

    def no_command(args: argparse.Namespace) -> int:
        return _error("ledger: choose a command: tail, stats or verify; fix: e.g. "
                      "compactor ledger tail (see compactor ledger --help)")

    parser.set_defaults(func=no_command)
    sub = parser.add_subparsers(dest="ledger_command", metavar="{tail,stats,verify}")

    def child(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--ledger", metavar="PATH", dest="ledger_more", action="extend",
                       nargs="+", default=argparse.SUPPRESS, help=help_path)
        return p

    tail = child("tail", "print the last records")
    tail.add_argument("-n", "--lines", type=non_negative_int, default=10, metavar="N",
                      help="how many records (default 10)")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="keep printing records as they are appended (Ctrl-C stops)")
    tail.add_argument("--event", metavar="E", help="only records of this event")
    tail.add_argument("--json", action="store_true", help="print records as JSON lines")
    tail.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
    tail.set_defaults(func=_guard(cmd_tail))

    stats = child("stats", "print compaction, cost and alert totals, per agent and per day")
    stats.add_argument("--since", metavar="WHEN",
                       help="only records since WHEN: 30d, 12h, 2w or an ISO date")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    add_engine_option(stats)
    stats.set_defaults(func=_guard(cmd_stats))

    check = child("verify", "check every line; exit 1 when torn or invalid lines are found")
    check.add_argument("--repair", action="store_true",
                       help="cut torn last lines and finish interrupted compressions")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_guard(cmd_verify))
    return parser
