"""LangChain's ``trim_messages`` as a benchmark strategy, and the conversions it needs.

Our histories are provider dicts (Anthropic Messages API or OpenAI chat); ``trim_messages``
works on LangChain messages. :func:`to_langchain` maps them to the representation a
LangChain agent holds for either provider (``AIMessage.tool_calls`` and one ``ToolMessage``
per tool result, as ``langchain-anthropic`` and ``langchain-openai`` produce; Anthropic
``tool_use`` blocks also stay in the ``AIMessage`` content, as ``langchain-anthropic``
keeps them and ``count_tokens_approximately`` expects), and
:func:`from_langchain` maps a (possibly trimmed) list back. A trimmed list that keeps a
``ToolMessage`` without its ``AIMessage`` maps back to an orphan ``tool_result`` /
``tool`` message: exactly the invalid request the provider would receive, which
``compactor._validate.validate`` then counts.

Requires ``langchain-core`` (the ``bench`` extra).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .._errors import ConfigError
from .._format import Format
from .._validate import validate

from .._optional import require
from ._baseline import BaselineResult

require("langchain_core", extra="bench", what="the trim_messages strategy")
from langchain_core.messages import (AIMessage, BaseMessage, HumanMessage,  # noqa: E402
                                     SystemMessage, ToolMessage)
from langchain_core.messages.utils import count_tokens_approximately, trim_messages  # noqa: E402

Message = Mapping[str, Any]


# --------------------------------------------------------------------------- conversion
def message_to_langchain(m: Message, fmt: Format) -> list[BaseMessage]:
    """One provider message as LangChain messages (a list: an Anthropic user message
    carrying N tool results becomes N ``ToolMessage`` s, then a ``HumanMessage`` for any
    other block).

    Raises:
        ConfigError: a role the format does not have (field ``messages``).
    """
    role = m.get("role")
    content = m.get("content")
    if role in ("system", "developer"):
        return [SystemMessage(content=content if content is not None else "")]
    if fmt is Format.OPENAI:
        if role == "user":
            return [HumanMessage(content=content if content is not None else "")]
        if role == "tool":
            return [ToolMessage(content=content if content is not None else "",
                                tool_call_id=str(m.get("tool_call_id")), name=m.get("name"))]
        if role == "assistant":
            calls = [{"id": c["id"], "name": c["function"]["name"],
                      "args": json.loads(c["function"].get("arguments") or "{}")}
                     for c in m.get("tool_calls") or []]
            return [AIMessage(content=content if content is not None else "", tool_calls=calls)]
    else:
        if role == "user":
            if not isinstance(content, list):
                return [HumanMessage(content=content)]
            out: list[BaseMessage] = []
            rest = []
            for b in content:
                if isinstance(b, Mapping) and b.get("type") == "tool_result":
                    out.append(ToolMessage(content=b.get("content", ""),
                                           tool_call_id=str(b.get("tool_use_id")),
                                           status="error" if b.get("is_error") else "success"))
                else:
                    rest.append(b)
            if rest:
                out.append(HumanMessage(content=rest))
            return out
        if role == "assistant":
            if not isinstance(content, list):
                return [AIMessage(content=content)]
            # as langchain-anthropic builds it: the blocks stay in content (tool_use
            # included; count_tokens_approximately counts them there) and the calls are
            # also on tool_calls
            calls = [{"id": b["id"], "name": b["name"], "args": b.get("input", {})}
                     for b in content if isinstance(b, Mapping) and b.get("type") == "tool_use"]
            return [AIMessage(content=list(content), tool_calls=calls)]
    raise ConfigError(f"role {role!r} cannot be converted for the {fmt.value} format",
                      field="messages")


def to_langchain(messages: Sequence[Message], fmt: Format, *,
                 system: Any = None) -> list[BaseMessage]:
    """``messages`` as LangChain messages; an Anthropic top-level ``system`` (str or text
    blocks) becomes a leading ``SystemMessage`` (what ``include_system=True`` keeps)."""
    out: list[BaseMessage] = []
    if system:
        out.append(SystemMessage(content=system if isinstance(system, str) else list(system)))
    for m in messages:
        out.extend(message_to_langchain(m, fmt))
    return out


def _ai_to_dict(m: AIMessage, fmt: Format) -> dict[str, Any]:
    if fmt is Format.OPENAI:
        d: dict[str, Any] = {"role": "assistant", "content": m.content if m.content != ""
                             or not m.tool_calls else None}
        if m.tool_calls:
            d["tool_calls"] = [{"id": c["id"], "type": "function",
                                "function": {"name": c["name"],
                                             "arguments": json.dumps(c["args"])}}
                               for c in m.tool_calls]
        return d
    content = m.content
    if isinstance(content, list) and any(isinstance(b, Mapping) and b.get("type") == "tool_use"
                                         for b in content):
        return {"role": "assistant", "content": list(content)}   # tool_use blocks in content
    if not m.tool_calls:
        return {"role": "assistant", "content": content}
    blocks: list[Any] = ([{"type": "text", "text": content}] if isinstance(content, str)
                         and content else list(content) if isinstance(content, list) else [])
    blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["args"]}
               for c in m.tool_calls]
    return {"role": "assistant", "content": blocks}


def _tool_block(m: ToolMessage) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id,
                         "content": m.content}
    if m.status == "error":
        b["is_error"] = True
    return b


def from_langchain(messages: Sequence[BaseMessage], fmt: Format) -> list[dict[str, Any]]:
    """LangChain messages back to provider dicts of ``fmt``.

    Anthropic: ``SystemMessage`` s are dropped (the system prompt is a top-level parameter);
    a run of ``ToolMessage`` s becomes one ``user`` message of ``tool_result`` blocks, and a
    ``HumanMessage`` with block content directly after such a run joins it (the shape
    :func:`message_to_langchain` split). OpenAI: one dict per message.

    Raises:
        ConfigError: a message type other than system/human/AI/tool (field ``messages``).
    """
    out: list[dict[str, Any]] = []
    run: list[Any] | None = None   # content of the open Anthropic tool-result user message
    for m in messages:
        if isinstance(m, ToolMessage):
            if fmt is Format.OPENAI:
                d: dict[str, Any] = {"role": "tool", "tool_call_id": m.tool_call_id,
                                     "content": m.content}
                if m.name is not None:
                    d["name"] = m.name
                out.append(d)
                continue
            if run is None:
                run = []
                out.append({"role": "user", "content": run})
            run.append(_tool_block(m))
            continue
        if isinstance(m, HumanMessage) and run is not None and isinstance(m.content, list):
            run.extend(m.content)
            run = None
            continue
        run = None
        if isinstance(m, SystemMessage):
            if fmt is Format.OPENAI:
                out.append({"role": "system", "content": m.content})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": m.content})
        elif isinstance(m, AIMessage):
            out.append(_ai_to_dict(m, fmt))
        else:
            raise ConfigError(f"cannot convert a {type(m).__name__} back to {fmt.value}",
                              field="messages")
    return out


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
