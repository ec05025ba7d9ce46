"""results.md and the charts: pure functions of results.json.

:func:`render_markdown` takes the parsed results.json and returns results.md; nothing else
goes in, so ``render_markdown(json.load(open("results.json")))`` reproduces the file (a
test checks it). :func:`render_charts` draws the PNGs from the same dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._strategies import DESCRIPTIONS

#: File names written into a results folder.
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CHARTS = {"retention": "retention_vs_compaction.png", "scaling": "per_call_cost.png",
          "invalid": "invalid_rate.png"}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _num(x: float | int | None, fmt: str = ",") -> str:
    return "–" if x is None else format(x, fmt)


def _ms(x: float | None) -> str:
    return "–" if x is None else (f"{x:.3f}" if x < 1 else f"{x:.2f}")


def retention(cell: Mapping[str, Any]) -> tuple[float | None, str]:
    """The retention figure of a cell and its kind: probe answers kept vs the ceiling when
    the input has probes (LoCoMo), else must-keep items kept (tau-bench)."""
    if cell.get("probes_ceiling"):
        return cell["probes_vs_ceiling"], "probes"
    return cell.get("must_keep_rate"), "must-keep"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    out = ["| " + " | ".join(head) + " |",
           "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def headline_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """One row per dataset, window and strategy: compaction ratio, retention, invalid %."""
    rows = []
    for c in results["cells"]:
        r, kind = retention(c)
        rows.append([c["dataset"], c["window"], c["strategy"], _pct(c["compaction_ratio"]),
                     f"{_pct(r)} ({kind})" if r is not None else "–",
                     f"{c['invalid_histories']:,} ({_pct(c['invalid_rate'])})"])
    return rows


def render_markdown(results: Mapping[str, Any]) -> str:
    """results.md for ``results`` (the parsed results.json). Pure and deterministic."""
    r = results
    env = r["environment"]
    L: list[str] = [f"# Compaction benchmark — {r['date']}", ""]
    L.append(f"`{r['command']}` — {'quick slice' if r['quick'] else 'full run'}, "
             f"{r['duration_s']:,} s wall on {env['cpus']} CPUs ({env['platform']}); Python "
             f"{env['python']}, compactor {env['compactor']}, langchain-core "
             f"{env['langchain_core']}; token counts by `{env['counter']}`. Every figure below "
             f"is computed from `{RESULTS_JSON}` in this folder.")
    L.append("")
    L.append("## Inputs")
    L.append("")
    L += _table(["dataset", "file", "format", "conversations", "messages", "probes",
                 "tool schemas counted"],
                [[d["name"], f"`{d['file']}`", d["format"], f"{d['conversations']:,}",
                  f"{d['messages']:,}", f"{d['probes']:,}", "yes" if d["tools_counted"] else "no"]
                 for d in r["datasets"]], "lllrrrl")
    L.append("")
    L.append("Windows: " + ", ".join(r["windows"]) + " (a token count is the whole request: "
             "system prompt, tool schemas if counted, messages; `25%` is the system prompt plus "
             "25% of each conversation's other messages).")
    L.append("")
    L.append("## Strategies")
    L.append("")
    for s in r["strategies"]:
        L.append(f"- `{s}` — {DESCRIPTIONS.get(s, s)}")
    for sk in r["skipped"]:
        L.append(f"- `{sk['strategy']}` — {sk['reason']}")
    L.append("")
    L.append("## Headline: savings, retention, validity")
    L.append("")
    L.append("Compaction ratio = share of input tokens saved against sending the whole history "
             "on the same calls (the `none` row). Retention = probe answers still in the final "
             "context vs the full-context ceiling (LoCoMo), or must-keep items (ids, amounts, "
             "dates, flight numbers, names) of evicted messages still in the final context "
             "(tau-bench). Invalid = histories sent that break a provider rule.")
    L.append("")
    L += _table(["dataset", "window", "strategy", "compaction ratio", "retention", "invalid"],
                headline_rows(r), "lllrrr")
    L.append("")
    for ds in r["datasets"]:
        cells = [c for c in r["cells"] if c["dataset"] == ds["name"]]
        L.append(f"## {ds['name']}: every metric")
        L.append("")
        rows = []
        for c in cells:
            rules = ", ".join(f"{k} {v}" for k, v in c["invalid_rules"].items())
            rows.append([
                c["window"], c["strategy"], f"{c['model_calls']:,}", _num(c["tokens_per_call"], ",.0f"),
                f"{c['tokens_sent']:,}", _pct(c["compaction_ratio"]),
                f"{c['compactions_per_conversation']:g}",
                f"{c['invalid_histories']:,} ({_pct(c['invalid_rate'])})" + (f": {rules}" if rules else ""),
                f"{c['empty_histories']:,}", f"{c['over_window']:,}", f"{c['overflows']:,}",
                f"{c['must_keep_kept']:,}/{c['must_keep_total']:,} ({_pct(c['must_keep_rate'])})",
                (f"{c['probes_contained']}/{c['probes_ceiling']} ({_pct(c['probes_vs_ceiling'])})"
                 if c["probes_ceiling"] else "–"),
                _ms(c["cpu_per_call_median_ms"]), _ms(c["cpu_per_call_p95_ms"]),
                _num(c["cpu_total_s"], ".2f")])
        L += _table(["window", "strategy", "model calls", "tokens/call", "tokens sent",
                     "compaction ratio", "compactions/conv", "invalid (rules)", "empty",
                     "over window", "overflows", "must-keep kept", "probes / ceiling",
                     "CPU/call median ms", "CPU/call p95 ms", "CPU total s"], rows,
                    "llrrrrrrrrrrrrrr")
        L.append("")
        L += _kind_table(cells)
    L.append("Empty = histories with no conversation message left (the system prompt alone). "
             "Over window = histories over the window by our count (tiktoken); "
             "`count_tokens_approximately` counts characters / 4. Overflows = calls whose "
             "floor (system prompt + the turn in progress) alone exceeds the window: not sent. "
             "CPU = process CPU time of the strategy's call only (for `trim_messages`, the "
             "`trim_messages` call, not our dict conversion).")
    L.append("")
    sc = r["scaling"]
    L.append("## Scaling: cost per call and per replay as the history grows")
    L.append("")
    L.append(f"One history chained from `{sc['dataset']}` conversations, the agent's full "
             f"history passed before every model call, window {sc['window']:,} tokens. Per-call "
             "cost at N = median CPU of the calls made while the history held 0.8N..N messages; "
             "replay cost at N = total CPU of all calls up to N messages. Slopes are "
             "least-squares fits of log(cost) on log(N): 0 = flat, 1 = linear, 2 = quadratic.")
    L.append("")
    names = list(sc["strategies"])
    head = ["messages"] + [f"{n} ms/call" for n in names] + [f"{n} replay s" for n in names]
    rows = []
    for i, n in enumerate(sc["sizes"]):
        row = [f"{n:,}"]
        row += [_ms(sc["strategies"][s]["points"][i]["per_call_median_ms"]) for s in names]
        row += [f"{sc['strategies'][s]['points'][i]['total_s']:.2f}" for s in names]
        rows.append(row)
    rows.append(["**slope**"] + [_num(sc["strategies"][s]["per_call_slope"], ".2f") for s in names]
                + [_num(sc["strategies"][s]["total_slope"], ".2f") for s in names])
    L += _table(head, rows, "l" + "r" * (len(head) - 1))
    L.append("")
    ut = r["under_threshold"]
    L.append("## Under the threshold (nothing to compact)")
    L.append("")
    L.append(f"Per-call CPU on a {ut['messages']:,}-message history (`{ut['dataset']}` chained) "
             "that grows by one message per call: `compact_if_needed` (counts cached: only the "
             "new message is counted and validated) vs `trim_messages` with "
             "`count_tokens_approximately` on the same history (goal: "
             f"≥ {ut['goal_ratio']}x).")
    L.append("")
    L += _table(["", "ms per call", "trim_messages / ours"],
                [[f"ours, `{ut['counter']}` counts", _ms(ut["ours_per_call_ms"]),
                  f"{ut['ratio']}x"],
                 ["ours, heuristic counts (chars / 3.6)", _ms(ut["ours_heuristic_per_call_ms"]),
                  f"{ut['ratio_heuristic']}x"],
                 ["`trim_messages`", _ms(ut["trim_messages_per_call_ms"]), "1x"]], "lrr")
    L.append("")
    L.append("## Charts")
    L.append("")
    L.append(f"- `{CHARTS['retention']}` — retention vs compaction ratio, one point per "
             "strategy and window (the headline table).")
    L.append(f"- `{CHARTS['scaling']}` — per-call and per-replay CPU vs history length, "
             "log-log, with the fitted slopes (the scaling table).")
    L.append(f"- `{CHARTS['invalid']}` — invalid-history rate per strategy and window, on "
             "the inputs with tool calls.")
    L.append("")
    if r.get("llm"):
        L.append(f"LLM: {r['llm']}")
        L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------- charts
_COLORS = {"none": "#7f7f7f", "truncation": "#ff7f0e", "trim_messages": "#d62728",
           "trim_messages+human": "#9467bd", "ours": "#2ca02c", "ours+llm": "#17becf"}
_MARKERS = ["o", "s", "^", "D", "v", "P"]


def _kind_table(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """Probe answers kept per probe kind (``contained/ceiling``), one row per window and
    strategy; nothing when the input's probes carry no kinds. Compares strategies kind by
    kind (a summary must keep each kind at least as well as plain truncation)."""
    kinds = sorted({k for c in cells for k in (c.get("probes_by_kind") or {})})
    if not kinds:
        return []
    rows = []
    for c in cells:
        by = c.get("probes_by_kind") or {}
        rows.append([c["window"], c["strategy"]] + [
            f"{by[k]['contained']}/{by[k]['ceiling']}" if k in by else "–" for k in kinds])
    return ["Probe answers kept, by probe kind (kept / in the full history):", ""] + \
        _table(["window", "strategy", *kinds], rows, "ll" + "r" * len(kinds)) + [""]


def render_charts(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Draw the three PNGs of :data:`CHARTS` into ``out_dir``; returns their paths.

    Raises:
        MissingExtraError: matplotlib is not installed (the ``bench`` extra).
    """
    from .._optional import require

    matplotlib = require("matplotlib", extra="bench", what="the bench charts")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    out_dir = Path(out_dir)
    paths = []
    cells = results["cells"]
    datasets = [d["name"] for d in results["datasets"]]
    windows = results["windows"]
    strategies = [s for s in results["strategies"]]

    # 1. retention vs compaction ratio, one panel per dataset
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        kind = "must-keep"
        for c in cells:
            if c["dataset"] != ds or c["strategy"] == "none":
                continue
            y, kind = retention(c)
            if y is None or c["compaction_ratio"] is None:
                continue
            col = _COLORS.get(c["strategy"], "k")
            hollow = c["strategy"].endswith("+human")   # drawn over trim_messages' point
            ax.scatter(c["compaction_ratio"] * 100, y * 100, s=110 if hollow else 60,
                       facecolors="none" if hollow else col,
                       edgecolors=col if hollow else "black", linewidths=1.8 if hollow else 0.5,
                       marker=_MARKERS[windows.index(c["window"]) % len(_MARKERS)], zorder=3)
        ax.set_title(ds, fontsize=10)
        ax.set_xlabel("compaction ratio: input tokens saved vs no compaction (%)")
        ax.set_ylabel("probe answers kept vs ceiling (%)" if kind == "probes"
                      else "must-keep items of evicted turns kept (%)")
        ax.set_ylim(-3, 103)
        ax.set_xlim(-3, 103)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", label=s,
                          markerfacecolor="none" if s.endswith("+human") else _COLORS.get(s, "k"),
                          markeredgecolor=_COLORS.get(s, "k"))
               for s in strategies if s != "none"]
    handles += [plt.Line2D([], [], color="gray", marker=_MARKERS[i % len(_MARKERS)],
                           linestyle="", label=f"window {w}") for i, w in enumerate(windows)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("Retention vs compaction (up and right is better)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    paths.append(out_dir / CHARTS["retention"])
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # 2. scaling, log-log
    sc = results["scaling"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for s, v in sc["strategies"].items():
        pts = v["points"]
        xs = [p["messages"] for p in pts]
        a1.plot(xs, [p["per_call_median_ms"] for p in pts], marker="o", color=_COLORS.get(s, "k"),
                label=f"{s} (slope {_num(v['per_call_slope'], '.2f')})")
        a2.plot(xs, [p["total_s"] for p in pts], marker="o", color=_COLORS.get(s, "k"),
                label=f"{s} (slope {_num(v['total_slope'], '.2f')})")
    for ax, ylab, title in ((a1, "CPU per call, median (ms)", "Per-call cost"),
                            (a2, "CPU of the whole replay (s)", "Replay cost")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("history length (messages)")
        ax.set_ylabel(ylab)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(sc["sizes"])
        ax.set_xticklabels([f"{n:,}" for n in sc["sizes"]])
        ax.minorticks_off()
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"Cost as the history grows ({sc['dataset']} chained, window "
                 f"{sc['window']:,} tokens; log-log)")
    fig.tight_layout()
    paths.append(out_dir / CHARTS["scaling"])
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # 3. invalid-history rate per strategy and window (inputs with tool calls)
    tool_ds = [ds for ds in datasets
               if any(c["dataset"] == ds and c["invalid_histories"] for c in cells)] or datasets
    fig, axes = plt.subplots(1, len(tool_ds), figsize=(5.6 * len(tool_ds), 4.2), squeeze=False)
    shown = [s for s in strategies if s != "none"]
    width = 0.8 / max(1, len(windows))
    for ax, ds in zip(axes[0], tool_ds):
        ymax = 0.0
        for wi, w in enumerate(windows):
            vals, empties = [], []
            for s in shown:
                c = next((c for c in cells if c["dataset"] == ds and c["window"] == w
                          and c["strategy"] == s), None)
                calls = c["model_calls"] if c else 0
                vals.append((c["invalid_rate"] if c else 0.0) * 100)
                empties.append(100 * c["invalid_rules"].get("empty_messages", 0) / calls
                               if c and calls else 0.0)
            xs = [i + (wi - (len(windows) - 1) / 2) * width for i in range(len(shown))]
            bars = ax.bar(xs, vals, width=width, label=f"window {w}",
                          color=plt.cm.Blues(0.35 + 0.6 * wi / max(1, len(windows) - 1)),
                          edgecolor="black", linewidth=0.4)
            ax.bar(xs, empties, width=width, fill=False, hatch="///", edgecolor="white",
                   linewidth=0)
            for b, v in zip(bars, vals):
                ax.annotate(f"{v:.0f}" if v >= 0.5 else ("0" if v == 0 else "<1"),
                            (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=7)
            ymax = max(ymax, *vals)
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels(shown, rotation=15, fontsize=8)
        ax.set_ylabel("invalid histories sent (% of model calls)")
        ax.set_ylim(0, max(5.0, ymax * 1.5))   # room for the legend above the bars
        ax.set_title(ds, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        if any(c["invalid_rules"].get("empty_messages") for c in cells if c["dataset"] == ds):
            ax.bar([0], [0], fill=False, hatch="///", edgecolor="gray",
                   label="of which: no message left (empty)")
        ax.legend(fontsize=8, ncol=2, loc="upper left")
    fig.suptitle("Invalid-history rate (a provider rule broken: HTTP 400; lower is better)")
    fig.tight_layout()
    paths.append(out_dir / CHARTS["invalid"])
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write_results(results: Mapping[str, Any], out_dir: Path, *, charts: bool = True) -> list[Path]:
    """Write results.json, results.md (rendered from the JSON text just written, so the
    two cannot disagree) and the charts into ``out_dir`` (created)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, ensure_ascii=False) + "\n"
    (out_dir / RESULTS_JSON).write_text(text, encoding="utf-8")
    md = render_markdown(json.loads(text))
    (out_dir / RESULTS_MD).write_text(md, encoding="utf-8")
    paths = [out_dir / RESULTS_JSON, out_dir / RESULTS_MD]
    if charts:
        paths += render_charts(json.loads(text), out_dir)
    return paths
