"""``compactor bench``: run the benchmark suite and write a results folder.

Registered by ``compactor.cli`` (``add_bench_commands(subparsers)``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ._data import REPO
from ._strategies import STRATEGIES


def default_out(quick: bool) -> Path:
    """``<repo>/benchmarks/results/<UTC date>/`` (``<date>-quick/`` for ``--quick``); the
    current directory's ``benchmarks/results`` when the package is not an editable clone."""
    root = REPO / "benchmarks" if (REPO / "benchmarks").is_dir() else Path("benchmarks")
    date = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    return root / "results" / (date + ("-quick" if quick else ""))


def add_bench_commands(sub: Any) -> None:
    """Register ``bench`` on the ``compactor`` sub-command parser."""
    from ..cli import positive_int

    p = sub.add_parser("bench", help="benchmark compaction strategies on real transcripts",
                       description="Replays every input with every strategy at every window, "
                       "times per-call cost as the history grows, and writes results.json, "
                       "results.md and PNG charts (docs/benchmarks.md).")
    p.add_argument("--quick", action="store_true",
                   help="a slice of each input (LoCoMo 2 conversations, tau-bench 40 runs per "
                   "file), full scaling run; ~2 minutes on 2 cores")
    p.add_argument("--data", help="a conversation file or folder (default <repo>/../shared/data)")
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>[-quick])")
    p.add_argument("--windows", help="comma-separated windows, e.g. 2k,4k,8k,25%%")
    p.add_argument("--strategies", help=f"comma-separated, from {','.join(STRATEGIES)}")
    p.add_argument("--limit", type=positive_int,
                   help="replay at most N conversations of each file")
    p.add_argument("--scaling-sizes", help="comma-separated history lengths, e.g. 250,500,1000")
    p.add_argument("--scaling-window", type=positive_int,
                   help="window of the scaling run, tokens")
    p.add_argument("--counter", choices=["tiktoken", "heuristic"])
    p.add_argument("--tools", action="store_true",
                   help="count the <name>.tools.json schemas next to an input in every request")
    p.add_argument("--no-llm", action="store_true", help="skip ours+llm even when configured")
    p.add_argument("--no-charts", action="store_true", help="write results.json/.md only")
    p.set_defaults(func=cmd_bench)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`BenchConfig` of the command line (``--quick`` is the preset, options
    override it).

    Raises:
        ConfigError: a bad ``--scaling-sizes`` (field ``scaling_sizes``) or another field.
    """
    from ._run import BenchConfig, quick_config

    kw: dict[str, Any] = {}
    if args.data:
        kw["data"] = args.data
    if args.windows:
        kw["windows"] = tuple(_csv(args.windows) or ())
    if args.strategies:
        kw["strategies"] = tuple(_csv(args.strategies) or ())
    if args.limit:
        kw["limit"] = args.limit
        kw["limits"] = {}
    if args.scaling_sizes:
        try:
            kw["scaling_sizes"] = tuple(int(x) for x in _csv(args.scaling_sizes) or ())
        except ValueError:
            raise ConfigError(f"--scaling-sizes {args.scaling_sizes!r}: expected integers, "
                              "e.g. 250,500,1000", field="scaling_sizes") from None
    if args.scaling_window:
        kw["scaling_window"] = args.scaling_window
    if args.counter:
        kw["counter"] = args.counter
    if args.tools:
        kw["count_tools"] = True
    return quick_config(**kw) if args.quick else BenchConfig(**kw)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 on success, 2 on bad input (raised as ``ConfigError``)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from ._data import load_datasets
    from ._llm import llm_from_env
    from ._report import write_results
    from ._run import run_bench, steps

    from .._optional import require

    console = Console(stderr=True)
    t0 = time.perf_counter()
    config = config_from_args(args)
    # the whole run needs LangChain (its baselines and the scaling run); charts need
    # matplotlib: say so in one line before any work, not after minutes of it
    require("langchain_core", extra="bench", what="compactor bench")
    if not args.no_charts:
        require("matplotlib", extra="bench", what="the bench charts (or pass --no-charts)")
    datasets = load_datasets(config.data)   # bad --data: its one line before any other
    llm, note = (None, "skipped: --no-llm") if args.no_llm else llm_from_env()
    if "ours+llm" in config.strategies:
        console.print(f"[dim]{note}[/]")
    for d in datasets:
        lim = config.limits.get(d.name, config.limit)
        if lim is not None:
            d.conversations = d.conversations[:lim]
    strategies = [s for s in config.strategies if s != "ours+llm" or llm is not None]
    total = steps(config, datasets, strategies)
    out = Path(args.out) if args.out else default_out(config.quick)
    argv = sys.argv[1:]
    command = ("compactor " + " ".join(shlex.quote(a) for a in argv) if argv[:1] == ["bench"]
               else "compactor bench" + (" --quick" if config.quick else "") + " (from Python)")
    with Progress(TextColumn("[bold]bench[/]"), TextColumn("{task.description:<34}"),
                  BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as prog:
        task = prog.add_task("loading", total=total)

        def on_step(desc: str, n: int) -> None:
            prog.update(task, advance=n, description=desc)

        results = run_bench(config, on_step=on_step, llm=llm, llm_note=note,
                                command=command, datasets=datasets)
        prog.update(task, completed=total)
    paths = write_results(results, out, charts=not args.no_charts)
    took = time.perf_counter() - t0
    from ._report import headline_rows

    from rich.table import Table

    t = Table(title=f"compaction benchmark ({'quick' if config.quick else 'full'})")
    for h in ("dataset", "window", "strategy", "compaction ratio", "retention", "invalid"):
        t.add_column(h, justify="left" if h in ("dataset", "window", "strategy") else "right")
    for row in headline_rows(results):
        t.add_row(*row)
    out_console = Console()
    if not out_console.is_terminal:
        out_console = Console(width=160)
    out_console.print(t)
    ut = results["under_threshold"]
    print(f"under the threshold ({ut['messages']:,} messages): trim_messages / ours per call = "
          f"{ut['ratio']}x ({ut['counter']}), {ut['ratio_heuristic']}x (heuristic counts)")
    for s, v in results["scaling"]["strategies"].items():
        print(f"scaling {s}: per-call slope {v['per_call_slope']}, replay slope {v['total_slope']}")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    print(f"bench took {took:.1f} s")
    return 0
