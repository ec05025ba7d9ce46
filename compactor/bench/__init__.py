"""Offline compaction benchmarks on real transcripts (``compactor bench``, issue 6).

Every strategy -- no compaction, pair-safe truncation, LangChain ``trim_messages`` (with and
without ``start_on="human"``), our compactor with the offline summarizer and, when one is
configured, with an LLM summarizer -- is replayed turn by turn on the same inputs at the
same windows through ``compactor._replay.replay_conversation``; the run writes
``results.json``, ``results.md`` (a pure function of the JSON) and PNG charts. See
``docs/benchmarks.md``. Needs the ``bench`` extra (``langchain-core``, ``matplotlib``).
"""

from ._report import render_charts, render_markdown, write_results
from ._run import BenchConfig, quick_config, run_bench
from ._strategies import STRATEGIES

__all__ = ["STRATEGIES", "BenchConfig", "quick_config", "render_charts", "render_markdown",
           "run_bench", "write_results"]
