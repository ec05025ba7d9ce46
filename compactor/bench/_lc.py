"""LangChain's ``trim_messages`` as a benchmark strategy, and the conversions it needs.

Our histories are provider dicts (Anthropic Messages API or OpenAI chat); ``trim_messages``
works on LangChain messages. The conversions are the public ones of
:mod:`compactor.adapters.langchain`: :func:`to_langchain` maps them to the representation a
LangChain agent holds for either provider (Anthropic ``tool_use`` blocks also stay in the
``AIMessage`` content, as ``count_tokens_approximately`` expects), and
:func:`from_langchain` maps a (possibly trimmed) list back. A trimmed list that keeps a
``ToolMessage`` without its ``AIMessage`` maps back to an orphan ``tool_result`` /
``tool`` message: exactly the invalid request the provider would receive, which
``compactor._validate.validate`` then counts.

Requires ``langchain-core`` (the ``bench`` extra).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .._errors import ConfigError
from .._format import Format
from .._validate import validate

from .._optional import require
from ._baseline import BaselineResult

require("langchain_core", extra="bench", what="the trim_messages strategy")
from langchain_core.messages import BaseMessage  # noqa: E402
from langchain_core.messages.utils import count_tokens_approximately, trim_messages  # noqa: E402

from compactor.adapters.langchain import from_langchain as _from_langchain  # noqa: E402
from compactor.adapters.langchain import message_to_langchain, to_langchain  # noqa: E402

Message = Mapping[str, Any]


# --------------------------------------------------------------------------- conversion
def from_langchain(messages: Sequence[BaseMessage], fmt: Format) -> list[dict[str, Any]]:
    """:func:`compactor.adapters.langchain.from_langchain` without the system prompt (the
    bench passes it separately): LangChain messages back to provider dicts of ``fmt``."""
    return _from_langchain(messages, fmt)[0]


# --------------------------------------------------------------------------- strategy
@dataclass
class _TrimSession:
    full: list[Mapping[str, Any]] = field(default_factory=list)     # the agent's full history
    lc: list[BaseMessage] = field(default_factory=list)             # its LangChain messages
    origin: dict[int, tuple[Mapping[str, Any], int]] = field(default_factory=dict)
    system_key: Any = None
    system_lc: list[BaseMessage] = field(default_factory=list)
    last_out: list[Mapping[str, Any]] = field(default_factory=list)


class TrimMessages:
    """``trim_messages(strategy="last", token_counter=count_tokens_approximately,
    include_system=True[, start_on="human"])`` applied the way a LangGraph agent applies
    it: to the agent's *full* history before each model call (the history this strategy
    returned last time plus the new messages is recognised and mapped back to the full
    one, as ``MessageCompactor`` does for drop-in callers).

    ``max_tokens`` is the window minus the tool schemas (measured with the bench's
    counter; ``trim_messages`` does not see tool schemas). Only the ``trim_messages`` call
    itself is timed (``cpu_s``, seconds of process CPU time per call): converting to and
    from LangChain messages is bench plumbing a LangChain agent does not pay.

    Duck-types the two ``MessageCompactor`` methods ``replay_conversation`` calls
    (``compact_if_needed``, ``count_request``) and its ``counter``.
    """

    def __init__(self, counting: Any, *, start_on: str | None = None) -> None:
        self.counting = counting           # a MessageCompactor used only to count tokens
        self.counter = counting.counter
        self.start_on = start_on
        self.cpu_s: list[float] = []
        self.lengths: list[int] = []
        self.last_messages: list[Mapping[str, Any]] | None = None
        #: per call: the provider rules the returned history broke (``validate`` codes)
        #: and whether it held no conversation message at all (the system prompt alone).
        self.checks: list[tuple[frozenset[str], bool]] = []
        self._sessions: dict[str, _TrimSession] = {}

    def count_request(self, messages: Sequence[Message], **kw: Any) -> int:
        """The request's tokens by the bench's counter (tiktoken by default)."""
        return int(self.counting.count_request(messages, **kw))

    def forget(self, session_id: str) -> None:
        """Drop a finished conversation's state (memory)."""
        self._sessions.pop(session_id, None)
        forget = getattr(self.counting, "forget", None)
        if forget is not None:
            forget(session_id)

    def _extend(self, s: _TrimSession, new: Sequence[Message], fmt: Format) -> None:
        for m in new:
            parts = message_to_langchain(m, fmt)
            for p in parts:
                s.origin[id(p)] = (m, len(parts))
            s.full.append(m)
            s.lc.extend(parts)

    def _back(self, s: _TrimSession, out: Sequence[BaseMessage], fmt: Format) -> list[Message]:
        """Trimmed LangChain messages back to dicts: a source message whose parts all
        survived is returned as the same object; a partial one is rebuilt."""
        res: list[Message] = []
        i = 0
        while i < len(out):
            src = s.origin.get(id(out[i]))
            if src is None:            # the system message we added
                res.extend(from_langchain([out[i]], fmt))
                i += 1
                continue
            j = i + 1
            while j < len(out) and s.origin.get(id(out[j]), (None,))[0] is src[0]:
                j += 1
            res.extend([src[0]] if j - i == src[1] else from_langchain(out[i:j], fmt))
            i = j
        return res

    async def compact_if_needed(self, messages: Sequence[Message], *, system: Any = None,
                                tools: Sequence[Mapping[str, Any]] | None = None,
                                window: int | None = None, session_id: str | None = None,
                                fmt: Format | None = None, **_: Any) -> BaselineResult:
        """Trim the full history to ``window`` tokens (as ``count_tokens_approximately``
        counts them).

        Raises:
            ConfigError: no ``window`` or ``fmt`` given.
        """
        if window is None or fmt is None:
            raise ConfigError("TrimMessages needs window= and fmt=", field="window")
        key = session_id or "default"
        s = self._sessions.setdefault(key, _TrimSession())
        n, k = len(s.last_out), len(s.full)
        if n and len(messages) >= n and messages[0] is s.last_out[0] \
                and messages[n - 1] is s.last_out[-1]:
            self._extend(s, messages[n:], fmt)        # our last output + new messages
        elif k and len(messages) >= k and messages[0] is s.full[0] \
                and messages[k - 1] is s.full[-1]:
            self._extend(s, messages[k:], fmt)        # the agent's full history, grown
        else:
            s.full, s.lc, s.origin = [], [], {}
            self._extend(s, messages, fmt)
        if s.system_key is not system:
            s.system_key = system
            s.system_lc = to_langchain([], fmt, system=system)
        lc = [*s.system_lc, *s.lc]
        budget = window - (self.counting.count_request([], tools=tools, fmt=fmt) if tools else 0)
        t0 = time.process_time()
        out = trim_messages(lc, max_tokens=max(budget, 0), strategy="last",
                            token_counter=count_tokens_approximately, include_system=True,
                            start_on=self.start_on)
        self.cpu_s.append(time.process_time() - t0)
        self.lengths.append(len(s.full))
        back = self._back(s, out, fmt)
        if fmt is Format.ANTHROPIC:
            back = [m for m in back if m.get("role") != "system"]
        s.last_out = list(back)
        self.checks.append((frozenset(v.rule for v in validate(back, fmt)),
                            not any(m.get("role") not in ("system", "developer") for m in back)))
        self.last_messages = s.last_out
        compacted = len(out) < len(lc)
        before = after = 0
        if compacted:
            before = self.count_request(s.full, system=system, tools=tools, fmt=fmt)
            after = self.count_request(back, system=system, tools=tools, fmt=fmt)
        return BaselineResult(list(back), compacted, before, after, window,
                              ratio=1 - after / before if before else 0.0)
