"""The strategies a benchmark run compares, behind the interface
``compactor._replay.replay_conversation`` drives (``compact_if_needed``, ``count_request``,
``counter``).

========================  ====================================================================
name                      what it is
========================  ====================================================================
``none``                  no compaction: every call sends the whole history (the ceiling)
``truncation``            ``MessageCompactor(summarize=False)``: drops the oldest pair-safe
                          units down to the low watermark, no summary (``--summarizer none``)
``trim_messages``         LangChain ``trim_messages(strategy="last",
                          token_counter=count_tokens_approximately, include_system=True)``
``trim_messages+human``   the same with ``start_on="human"``
``ours``                  ``MessageCompactor()`` with the offline extractive summarizer
``ours+llm``              ``MessageCompactor(summarizer=<LLM>)``, only when one is configured
========================  ====================================================================

Every strategy records the process CPU time of each call (``cpu_s``, seconds) and the
length of the agent's history at that call (``lengths``, messages).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Mapping, Sequence

from .._compactor import MessageCompactor
from .._errors import ConfigError
from .._format import Format
from .._summary import Summarizer
from .._tokens import TokenCounter, message_tokens, system_tokens, tools_tokens
from ._baseline import BaselineResult

#: Strategy names in report order.
STRATEGIES = ("none", "truncation", "trim_messages", "trim_messages+human", "ours", "ours+llm")
#: Short descriptions used in results.md.
DESCRIPTIONS = {
    "none": "no compaction (the ceiling)",
    "truncation": "drop oldest pair-safe units, no summary (`MessageCompactor(summarize=False)`)",
    "trim_messages": "LangChain `trim_messages(strategy=\"last\", count_tokens_approximately)`",
    "trim_messages+human": "the same with `start_on=\"human\"`",
    "ours": "`MessageCompactor()`, offline extractive summarizer",
    "ours+llm": "`MessageCompactor(summarizer=<LLM>)`",
}


class _CountCache:
    """``count_request`` with per-message counts cached by object identity (the replay
    asks for the same messages' tokens at every call; messages are immutable once sent)."""

    counter: TokenCounter

    def _init_cache(self) -> None:
        self._counts: dict[int, tuple[Mapping[str, Any], int]] = {}
        self._sys: tuple[Any, Any, int] | None = None

    def count_request(self, messages: Sequence[Mapping[str, Any]], *, system: Any = None,
                      tools: Sequence[Mapping[str, Any]] | None = None,
                      fmt: Format | None = None) -> int:
        """Estimated input tokens of a request (same figures as
        ``MessageCompactor.count_request``), in tokens."""
        if fmt is None:
            raise ConfigError("count_request needs fmt= in the bench", field="fmt")
        if self._sys is None or self._sys[0] is not system or self._sys[1] is not tools:
            self._sys = (system, tools, system_tokens(system, self.counter)
                         + tools_tokens(tools, self.counter))
        total = self._sys[2]
        cache = self._counts
        for m in messages:
            hit = cache.get(id(m))
            if hit is None or hit[0] is not m:
                hit = cache[id(m)] = (m, message_tokens(m, fmt, self.counter))
            total += hit[1]
        return total

    def forget(self, session_id: str) -> None:
        """Drop cached counts after a conversation (memory)."""
        self._counts.clear()


class CountingSink:
    """A ledger sink that only counts events by name (``counts["summarizer_fallback"]``)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def emit(self, event: str, fields: Mapping[str, Any]) -> None:
        self.counts[event] += 1


class TimedCompactor(_CountCache, MessageCompactor):
    """``MessageCompactor`` recording the CPU time of each ``compact_if_needed`` call
    (``cpu_s``, seconds) and the length of the history passed (``lengths``, messages).
    Summarizer fallbacks are counted in ``sink`` (a :class:`CountingSink`); the last
    history returned is ``last_messages``."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("sink", CountingSink())
        super().__init__(**kw)
        self._init_cache()
        self.cpu_s: list[float] = []
        self.lengths: list[int] = []
        self.last_messages: list[Mapping[str, Any]] | None = None

    async def compact_if_needed(self, messages: Sequence[Mapping[str, Any]],  # type: ignore[override]
                                **kw: Any) -> Any:
        t0 = time.process_time()
        r = await super().compact_if_needed(messages, **kw)
        self.cpu_s.append(time.process_time() - t0)
        self.lengths.append(len(messages))
        self.last_messages = r.messages
        return r

    def forget(self, session_id: str) -> None:
        """Drop a finished conversation's session state and cached counts (memory)."""
        self.forget_session(session_id)
        self._counts.clear()


class NoCompaction(_CountCache):
    """The ceiling: returns the history unchanged (``compacted`` is always False)."""

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter
        self._init_cache()
        self.cpu_s: list[float] = []
        self.lengths: list[int] = []
        self.last_messages: list[Mapping[str, Any]] | None = None

    async def compact_if_needed(self, messages: Sequence[Mapping[str, Any]], *,
                                window: int | None = None, **_: Any) -> BaselineResult:
        self.cpu_s.append(0.0)
        self.lengths.append(len(messages))
        self.last_messages = list(messages)
        return BaselineResult(self.last_messages, False, 0, 0, window or 0)


class _CountingCompactor(_CountCache):
    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter
        self._init_cache()


def make_strategy(name: str, counter: TokenCounter, *, llm: Summarizer | None = None) -> Any:
    """A fresh strategy object for one replay (one dataset and window).

    Raises:
        ConfigError: an unknown name, or ``ours+llm`` without an LLM summarizer (field
            ``strategies``).
    """
    if name == "none":
        return NoCompaction(counter)
    if name == "truncation":
        return TimedCompactor(counter=counter, summarize=False, agent_id="bench")
    if name == "ours":
        return TimedCompactor(counter=counter, agent_id="bench")
    if name == "ours+llm":
        if llm is None:
            raise ConfigError("ours+llm needs an LLM summarizer; fix: set ANTHROPIC_API_KEY or "
                              "OPENAI_BASE_URL, or leave ours+llm out", field="strategies")
        return TimedCompactor(counter=counter, summarizer=llm, agent_id="bench")
    if name in ("trim_messages", "trim_messages+human"):
        from ._lc import TrimMessages

        return TrimMessages(_CountingCompactor(counter),
                            start_on="human" if name.endswith("+human") else None)
    raise ConfigError(f"unknown strategy {name!r}; fix: one of {', '.join(STRATEGIES)}",
                      field="strategies")
