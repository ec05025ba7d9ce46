"""The ``compactor`` command line.

``compactor replay FILE`` replays recorded conversations through the compactor (the main
job); ``compactor replay --demo`` does it on the session the package ships. Other
sub-commands are registered by their subsystems.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import json
import os
import sys
from importlib import resources
from typing import Any, NoReturn, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._compactor import MessageCompactor
from ._config import load_config
from ._errors import CompactorError
from ._otel import sink_from_env
from ._plan import PlanConfig
from ._replay import InputProblem, load_tools, parse_window, read_conversations, replay
from ._tokens import HeuristicCounter, Tier, TiktokenCounter

#: The demo's window, in tokens: small enough that the shipped session compacts often.
DEMO_WINDOW = 12_000


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit 2:
    ``compactor: error: PROG: PROBLEM; fix: ...`` (plain argparse prints its usage block
    first). Sub-command parsers inherit the class (``add_subparsers`` uses the parent's)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        fix = "" if "fix:" in message else f"; fix: see `{self.prog} --help`"
        self.exit(2, f"compactor: error: {self.prog}: {_one_line(message)}{fix}\n")


def positive_int(text: str) -> int:
    """argparse type: a whole number > 0 (e.g. ``--limit``)."""
    return _int_arg(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (e.g. ``--keep-recent``)."""
    return _int_arg(text, 0)


def _int_arg(text: str, low: int) -> int:
    try:
        n = int(text.replace("_", ""))
    except ValueError:
        n = None
    if n is None or n < low:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number {'> 0' if low else '>= 0'}; fix: pass e.g. "
            f"{max(low, 10)}")
    return n


def window_arg(text: str) -> str:
    """argparse type of ``--window``: checked with :func:`compactor._replay.parse_window`,
    kept as written (the report shows it)."""
    try:
        parse_window(text)
    except CompactorError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--window {text!r}: ")) from None
    return text


def _add_replay(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay recorded conversations through the compactor",
                       description="Replays each conversation the way an agent loop would: "
                       "before each model call the history goes through compact_if_needed.")
    p.add_argument("path", nargs="?", help="conversation file (JSONL {id, messages, probes?}, "
                   "OpenAI JSON list of runs, or a JSON list of messages)")
    p.add_argument("--demo", action="store_true", help="replay the session the package ships")
    p.add_argument("--format", default="auto",
                   choices=["auto", "anthropic", "openai", "responses"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--window", type=window_arg,
                   help="context window in tokens (system + tools + messages, no output "
                   "reserve), e.g. 4000 or 8k, or a share of each conversation, e.g. 25%%")
    g.add_argument("--tier", choices=[t.value for t in Tier], help="use this tier's window")
    p.add_argument("--model", help="use this model's tier window")
    p.add_argument("--tools", help="JSON file of tool schemas to count")
    p.add_argument("--summarizer", default="extractive", choices=["extractive", "none"],
                   help="'none' drops the evicted span with no summary (truncation baseline)")
    p.add_argument("--config", help="compactor.toml to read (default: $COMPACTOR_CONFIG, else "
                   "./compactor.toml, else the shipped defaults); the options below win over it")
    p.add_argument("--keep-recent", type=non_negative_int,
                   help=f"default: [compactor] keep_recent ({PlanConfig.keep_recent})")
    p.add_argument("--high", type=float,
                   help="high watermark (share of the window that triggers a compaction); "
                   f"default: [compactor] high_watermark ({PlanConfig.high_watermark})")
    p.add_argument("--low", type=float,
                   help="low watermark (share of the window to compact down to); "
                   f"default: [compactor] low_watermark ({PlanConfig.low_watermark})")
    p.add_argument("--max-summary-tokens", type=non_negative_int,
                   help=f"default: [compactor] max_summary_tokens ({PlanConfig.max_summary_tokens})")
    p.add_argument("--counter", choices=["tiktoken", "heuristic"],
                   help="default: [compactor] counter (tiktoken)")
    p.add_argument("--limit", type=positive_int,
                   help="replay only the first N conversations of the file")
    p.add_argument("--events", action="store_true", help="print each compaction")
    p.add_argument("--probe-mode", choices=["end", "question"], default="end",
                   help="score probes on the context at the end of the conversation (end), or "
                   "with each probe's question as the newest user turn, question-time recall "
                   "included (question; needs --store and --recall)")
    p.add_argument("--recall", type=float, default=0.0, metavar="SHARE",
                   help="question-time recall: share of the window for archived spans relevant "
                   "to the newest user turn (needs --store; e.g. 0.1; default 0: off)")
    p.add_argument("--store", help="archive every message and keep session state in this folder "
                   "(then: compactor sessions --store DIR restore ID)")
    p.add_argument("--ledger", help="append compaction and fallback records to this JSONL ledger")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_cmd_replay)


def _cmd_replay(args: argparse.Namespace) -> int:
    """Replay the good conversations of a file and report them; name every bad one on
    stderr (one line each). Exit 0; 1 an invalid history was sent; 2 a conversation (or
    the file, or an option) was bad input -- the good ones were still replayed."""
    console = Console(stderr=args.json)
    if args.demo:
        data = resources.files("compactor") / "data"
        path = str(data / "demo_session.jsonl")
        tools_path = str(data / "demo_tools.json")
        window_arg = args.window or str(DEMO_WINDOW)
        show_events = True
    else:
        if not args.path:
            raise CompactorError("replay needs a conversation file (or --demo); fix: "
                                 "compactor replay FILE --window 8000")
        path, tools_path, window_arg, show_events = args.path, args.tools, args.window, args.events
    window, share = parse_window(window_arg) if window_arg else (None, None)
    tier = Tier(args.tier) if args.tier else None
    if window is None and share is None and tier is None and not args.model:
        raise CompactorError("replay needs --window, --tier or --model; fix: e.g. --window 8000")
    convs, problems = read_conversations(path, args.format)
    if args.limit:
        convs = [c for c in convs if c.index <= args.limit]
        problems = [p for p in problems if p.conversation <= args.limit]
    tools = load_tools(tools_path)
    conf = load_config(args.config)
    flags = {"high_watermark": args.high, "low_watermark": args.low,
             "keep_recent": args.keep_recent, "max_summary_tokens": args.max_summary_tokens}
    cfg = dataclasses.replace(conf.plan, **{k: v for k, v in flags.items() if v is not None})
    counter_name = args.counter or conf.value("compactor.counter")
    counter = TiktokenCounter() if counter_name == "tiktoken" else HeuristicCounter()
    store_spec = args.store or (str(conf.store_root) if conf.store_root else None)
    store = _open_store(store_spec) if store_spec else None
    if store is not None:
        convs = _storable(store, convs, problems, path)
    ledger = args.ledger or (str(conf.ledger_path) if conf.ledger_path else None)
    sink = sink_from_env(_open_ledger(ledger) if ledger else None)
    if (args.recall or args.probe_mode == "question") and store is None:
        raise CompactorError("--recall and --probe-mode question need a store; fix: add "
                             "--store DIR (the archive recall searches)")
    comp = MessageCompactor(counter=counter, config=cfg, windows=conf.windows,
                            summarize=args.summarizer != "none", store=store, sink=sink,
                            agent_id="replay", recall_share=args.recall)
    if tier is not None:
        from ._tokens import TIER_WINDOWS
        window = TIER_WINDOWS[tier]
    show_progress = len(convs) > 3 and console.is_terminal
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=not show_progress) as prog:
        task = prog.add_task("replay", total=len(convs))
        stats = asyncio.run(replay(convs, comp, window=window, share=share, tools=tools,
                                   model=args.model, keep_events=show_events,
                                   progress=lambda n: prog.update(task, completed=n),
                                   probe_mode=args.probe_mode))
    if sink is not None:
        sink.close()
    if store is not None and hasattr(store, "close"):
        store.close()
    # problems found while replaying (a rule validate() does not check): after the loader's
    late = list(stats.input_problems)
    stats.input_problems = [p.as_dict() for p in problems] + late
    out = stats.as_dict()
    out.update({"probe_mode": args.probe_mode, "recall": args.recall,
                "file": path, "window": window_arg or (args.tier or args.model),
                "summarizer": args.summarizer, "counter": getattr(counter, "encoding_name",
                                                                  counter.name),
                "conversations_skipped": len(problems)})
    code = 2 if stats.input_problems else (1 if stats.invalid_histories else 0)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        _print_problems(problems, late, path)
        return code
    if show_events:
        for e in stats.events:
            console.print(f"[bold]compaction[/] before call {e['call']:>3}: "
                          f"{e['tokens_before']:>6} -> {e['tokens_after']:>6} tokens "
                          f"({e['ratio']:.0%} removed), {e['removed']} messages summarized, "
                          f"summary {e['summary_tokens']} tokens, retention {e['retention']:.0%}")
        if stats.events:
            last = stats.events[-1]["summary"] or ""
            console.print("\n[bold]last summary[/] (first 12 lines):")
            for line in last.splitlines()[:12]:
                console.print("  " + line, markup=False, highlight=False)
            console.print()
    console.print(_table(out))
    _print_problems(problems, late, path)
    return code


def _open_store(root: str) -> Any:
    """The store ``--store`` names (a folder, created when missing, or a ``postgresql://``
    URL: :func:`compactor._stores.open_store`), or a one-line error naming ``--store`` and
    the fix."""
    from ._stores import is_store_url, open_store

    if is_store_url(root):
        return open_store(root)   # its errors are one line, the URL without its password
    if os.path.exists(root) and not os.path.isdir(root):
        raise CompactorError(f"--store {root}: is a file, not a folder; fix: pass the session "
                             "store's folder (or a path where one may be created)")
    try:
        store = open_store(root)
        if not os.access(root, os.W_OK | os.X_OK):   # its layout inside is the store's own
            raise PermissionError(errno.EACCES, "Permission denied", root)
        return store
    except OSError as e:
        raise CompactorError(f"--store {root}: cannot create or open the session store "
                             f"({e.strerror or e}{f': {e.filename}' if e.filename else ''}); "
                             "fix: pass a folder you may write to (or that does not exist yet "
                             "under one)") from None


def _open_ledger(path: str) -> Any:
    """``Ledger(path)``, or a one-line error naming ``--ledger`` and the fix."""
    from .ledger import Ledger
    try:
        return Ledger(path)
    except CompactorError as e:
        cause = e.__cause__
        why = os_error_line(cause) if isinstance(cause, OSError) else _one_line(str(e))
        raise CompactorError(f"--ledger {path}: cannot open the ledger: {why}") from None


def _storable(store: Any, convs: list[Any], problems: list[InputProblem],
              path: str) -> list[Any]:
    """The conversations whose id can name a session (in any store); the others become
    problems."""
    from ._store import encode_session_id

    ok = []
    for c in convs:
        try:
            encode_session_id(c.id)
        except CompactorError as e:
            fix = str(e).split("; fix: ", 1)[-1]
            problems.append(InputProblem(path, c.index, c.id, "id", "session_id",
                                         "cannot name a session in --store", fix))
            continue
        ok.append(c)
    problems.sort(key=lambda p: p.conversation)
    return ok


def _print_problems(problems: list[InputProblem], late: list[dict[str, Any]], path: str) -> None:
    """One ``compactor: error:`` line on stderr per bad conversation."""
    for p in problems:
        print(f"compactor: error: {p}", file=sys.stderr)
    for d in late:
        print(f"compactor: error: {path}: conversation {d.get('index') or '?'} "
              f"(id {d['conversation']}): "
              f"{_one_line(d.get('error') or ', '.join(d['rules']))}", file=sys.stderr)


def _table(d: dict[str, Any]) -> Table:
    t = Table(title=f"replay of {d['file']} (window {d['window']}, summarizer {d['summarizer']})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("conversations", d["conversations"]), ("model calls", d["model_calls"]),
        ("compactions", d["compactions"]),
        ("tokens before -> after (sum over compactions)",
         f"{d['tokens_before']:,} -> {d['tokens_after']:,}"),
        ("compaction ratio (share removed)", f"{d['compaction_ratio']:.1%}"),
        ("tokens sent (all calls)", f"{d['tokens_sent']:,}"),
        ("invalid histories sent", d["invalid_histories"]),
        ("calls over the window", d["over_window"]),
        ("overflows (floor over the window; not sent)", d["overflows"]),
        ("must-keep items kept", f"{d['must_keep_kept']}/{d['must_keep_total']} "
                                 f"({d['must_keep_rate']:.1%})"),
    ]
    if d["probes_total"]:
        rows.append(("probes contained / ceiling / total",
                     f"{d['probes_contained']} / {d['probes_ceiling']} / {d['probes_total']}"))
    if d["input_problems"]:
        rows.append(("bad input: conversations skipped (named on stderr)",
                     d.get("conversations_skipped", len(d["input_problems"]))))
    rows.append(("seconds", f"{d['seconds']:.2f}"))
    for k, v in rows:
        t.add_row(k, str(v))
    return t


def build_parser() -> argparse.ArgumentParser:
    """The ``compactor`` argument parser with every sub-command registered."""
    import importlib

    from . import __version__

    parser = OneLineParser(prog="compactor", description="Agent context compactor.")
    parser.add_argument("--version", action="version", version=f"compactor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_replay(sub)
    # Every sub-command module imports only the base dependencies at import time (its
    # optional ones inside the command, through compactor._optional.require), so a plain
    # install registers every command; tests/test_cli_base_install.py pins this.
    for mod, fn in _EXTENSIONS:
        getattr(importlib.import_module(mod), fn)(sub)
    return parser


#: Sub-commands registered by subsystems: (module, function(subparsers)).
_EXTENSIONS: list[tuple[str, str]] = [
    ("compactor.ledger._cli", "add_ledger_commands"),
    ("compactor._sessions_cli", "add_sessions_commands"),
    ("compactor._store_cli", "add_store_commands"),
    ("compactor._config_cli", "add_config_commands"),
    ("compactor.proxy._cli", "add_proxy_commands"),
    ("compactor.budgets._cli", "add_budget_commands"),
    ("compactor.bench._cli", "add_bench_commands"),
    ("compactor.maintenance._cli", "add_maintenance_commands"),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``compactor`` script. Returns the exit code: 0 ok, 1 the replay
    sent an invalid history (or a command's own failure code), 2 bad input (one line on
    stderr naming the field and the fix), 3 an internal error (one line; a bug of ours),
    130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CompactorError as e:
        print(f"compactor: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            return _closed_pipe()
        print(f"compactor: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compactor: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: one line, never a traceback to a user
        if os.environ.get("COMPACTOR_DEBUG"):
            raise
        print(f"compactor: internal error: {type(e).__name__}: {_one_line(str(e))}; "
              "please report it (set COMPACTOR_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


#: The fix for an ``OSError`` on a path, by errno.
_OS_FIXES = {
    errno.ENOENT: "check the path (its folder must exist)",
    errno.ENOTDIR: "a part of the path is a file where a folder is expected; pass another path",
    errno.EISDIR: "it is a folder; pass a file path",
    errno.EEXIST: "a file is where a folder is expected; pass another path",
    errno.EACCES: "run as a user who may read and write it, or pass another path",
    errno.EPERM: "run as a user who may read and write it, or pass another path",
    errno.EROFS: "the file system is read-only; pass a path on a writable one",
    errno.ENOSPC: "free disk space (or pass a path on another disk)",
}


def os_error_line(e: OSError) -> str:
    """One line for an ``OSError`` on a path: ``PATH: problem; fix: ...``."""
    where = f"{e.filename}: " if isinstance(e.filename, (str, bytes, os.PathLike)) else ""
    fix = _OS_FIXES.get(e.errno or 0, "check that the path exists and that you may read "
                        "(and write) it")
    return f"{where}{_one_line(e.strerror or str(e))}; fix: {fix}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _closed_pipe() -> int:
    """The reader went away (e.g. ``compactor ledger tail | head``): stop quietly; point
    stdout at /dev/null so the interpreter's final flush does not raise again (the recipe
    of the Python docs, "Note on SIGPIPE")."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


if __name__ == "__main__":
    sys.exit(main())
