"""``--chart``: usage distribution per profile, with the alert thresholds as lines.

matplotlib (the ``bench``/``test`` extra) is imported only here, with the Agg backend (no
display needed).
"""

from __future__ import annotations

import os

from .._errors import ConfigError
from ._config import AlertThresholds
from ._report import BudgetReport

_LINE_COLOURS = {"info": "#2b8cbe", "warning": "#f0a202", "critical": "#d7301f"}


def write_chart(report: BudgetReport, path: str | os.PathLike[str], *,
                alerts: AlertThresholds | None = None) -> None:
    """Save a PNG: one box per profile of its invocations' usage (% of the effective
    budget) with every invocation as a jittered dot, a dashed line per alert threshold
    (75/90/100% by default), and under each box its invocation count, exceedance rate
    and recommendation.

    Raises:
        ConfigError: matplotlib is not installed, or ``path`` cannot be written (no such
            folder, not writable, a format matplotlib does not know) (``field="chart"``).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--chart needs matplotlib; fix: pip install "
                          "'agent-context-compactor[bench]'", field="chart") from None
    import random

    alerts = alerts or AlertThresholds()
    groups = [g for g in report.by_profile if g.usages]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(groups) + 2), 5.5), dpi=110)
    data = [[100 * u for u in g.usages] for g in groups]
    if groups:
        ax.boxplot(data, widths=0.5, showfliers=False, whis=(5, 95),
                   medianprops={"color": "black"})
        rnd = random.Random(0)  # the same jitter every time
        for i, values in enumerate(data, start=1):
            xs = [i + rnd.uniform(-0.18, 0.18) for _ in values]
            colours = ["#d7301f" if v > 100 * alerts.critical else "#555555" for v in values]
            ax.scatter(xs, values, s=6, alpha=0.45, c=colours, zorder=3)
    for level, share in alerts.levels():
        ax.axhline(100 * share, linestyle="--", linewidth=1.2, color=_LINE_COLOURS[level],
                   zorder=2)
        ax.annotate(f"{level} {100 * share:g}%", xy=(1.0, 100 * share), xytext=(4, 0),
                    xycoords=("axes fraction", "data"), textcoords="offset points",
                    va="center", fontsize=8, color=_LINE_COLOURS[level])
    ax.set_xticks(range(1, len(groups) + 1))
    ax.set_xticklabels([f"{g.name}\nn={g.invocations}, exceeded {g.exceedance_rate:.1%}\n"
                        f"{g.recommendation}" + (f" -> {g.suggested_profile}"
                                                 if g.suggested_profile else "")
                        for g in groups], fontsize=8)
    ax.set_ylabel("peak request tokens, % of the effective budget")
    who = f", agent {report.agent}" if report.agent else ""
    since = f" since {report.since[:10]}" if report.since else ""
    ax.set_title(f"Budget usage per profile ({report.invocations} invocations{who}{since})\n"
                 "boxes: quartiles, whiskers: p5-p95; red dots: over budget", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(os.fspath(path))
    except (OSError, ValueError) as e:   # no such folder, not writable, unknown format
        raise ConfigError(f"--chart {os.fspath(path)}: cannot write the chart ({e}); fix: "
                          "name a .png file in an existing, writable folder",
                          field="chart") from None
    finally:
        plt.close(fig)
