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
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compactor.ledger._codec import COMMON_KEYS
from compactor.ledger._reader import follow_records, read_records, tail_records
from compactor.ledger._segments import list_segments
from compactor.ledger._stats import LedgerStats, Totals, compute_stats, parse_since
from compactor.ledger._verify import VerifyReport, verify

LEDGER_ENV = "COMPACTOR_LEDGER"
DEFAULT_LEDGER = "./compactor-ledger/ledger.jsonl"


def ledger_path(args: argparse.Namespace) -> Path:
    """``--ledger``, else ``[ledger] path`` of ``compactor.toml`` (``$COMPACTOR_LEDGER``
    included), else ``./compactor-ledger/ledger.jsonl``."""
    from compactor._config import resolve_ledger_path

    return resolve_ledger_path(getattr(args, "ledger", None))


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
    """Wrap a command: an ``OSError`` while reading the ledger is one line, exit 2."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except BrokenPipeError:
            raise
        except OSError as e:
            return _unreadable(ledger_path(args), e)
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


def print_stats(stats: LedgerStats, path: Path) -> None:
    """Render :class:`LedgerStats` as rich tables on stdout."""
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


def cmd_stats(args: argparse.Namespace) -> int:
    """Print compactions, tokens saved, summarizer cost, failures, retries and budget
    alerts, overall, per agent and per day (``--json``: one JSON object)."""
    path = ledger_path(args)
    bad = _check_path(path)
    if bad is not None:
        return bad
    since = None
    if args.since:
        try:
            since = parse_since(args.since, datetime.now(timezone.utc))
        except ValueError as exc:
            return _error(str(exc))
    records = read_records(path, since=since)
    stats = compute_stats(records, since=since.isoformat() if since else None)
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print_stats(stats, path)
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


def add_ledger_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ledger`` (with ``tail``, ``stats``, ``verify``) to ``subparsers`` (the
    object ``ArgumentParser.add_subparsers()`` returns). Returns the ``ledger`` parser.

    ``--ledger PATH`` is accepted both before and after the sub-command."""
    from compactor.cli import non_negative_int

    help_path = (f"the ledger file (default: ${LEDGER_ENV}, else {DEFAULT_LEDGER})")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ledger", help="inspect and check the JSONL ledger",
        description="Inspect and check the append-only JSONL ledger.")
    parser.add_argument("--ledger", metavar="PATH", default=None, help=help_path)

    def no_command(args: argparse.Namespace) -> int:
        return _error("ledger: choose a command: tail, stats or verify; fix: e.g. "
                      "compactor ledger tail (see compactor ledger --help)")

    parser.set_defaults(func=no_command)
    sub = parser.add_subparsers(dest="ledger_command", metavar="{tail,stats,verify}")

    def child(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--ledger", metavar="PATH", default=argparse.SUPPRESS, help=help_path)
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
    stats.set_defaults(func=_guard(cmd_stats))

    check = child("verify", "check every line; exit 1 when torn or invalid lines are found")
    check.add_argument("--repair", action="store_true",
                       help="cut torn last lines and finish interrupted compressions")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_guard(cmd_verify))
    return parser
