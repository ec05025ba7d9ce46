"""LangChain adapter: converters between LangChain messages and our provider dicts, and
``CompactionMiddleware``, a LangChain v1 agent middleware that compacts the agent's
history before every model call.

    from langchain.agents import create_agent
    agent = create_agent(model, tools, middleware=[CompactionMiddleware(compactor,
                                                                        session_id="run-42")])

The converters map the representation a LangChain agent holds (``AIMessage.tool_calls``
and one ``ToolMessage`` per tool result, as ``langchain-anthropic`` and
``langchain-openai`` produce; Anthropic ``tool_use`` blocks also stay in the
``AIMessage`` content, as ``langchain-anthropic`` keeps them) to the Anthropic Messages or
OpenAI chat format and back. The middleware converts the state's messages, asks the
:class:`~compactor.MessageCompactor` (which archives every message and keeps call/result
pairs together), and when it compacted, replaces the state's messages the way LangChain's
own ``SummarizationMiddleware`` does: ``RemoveMessage(id=REMOVE_ALL_MESSAGES)`` followed by
the new history, in which every kept message is the agent's own ``BaseMessage``.

See ``docs/adapters/langchain.md``. The converters need ``langchain-core``; the middleware
needs ``langchain>=1.0`` (``pip install 'agent-context-compactor[langchain]'``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from compactor._errors import ConfigError
from compactor._format import Format
from compactor._optional import require
from compactor._recall import place_recall

from ._calibration import Calibrator, call_window

require("langchain_core", extra="langchain", what="compactor.adapters.langchain")
from langchain_core.messages import (AIMessage, BaseMessage, HumanMessage,  # noqa: E402
                                     SystemMessage, ToolMessage)

try:  # the middleware's base class; the converters work without it
    from langchain.agents.middleware import AgentMiddleware as _Base
except ModuleNotFoundError:  # pragma: no cover - exercised without the langchain package
    _Base = object  # type: ignore[assignment,misc]

Message = Mapping[str, Any]

#: What the middleware and ``from_langchain`` take for ``fmt``.
FormatLike = Format | str


def _fmt(fmt: FormatLike) -> Format:
    try:
        return Format(fmt)
    except ValueError:
        raise ConfigError(f"fmt must be 'anthropic' or 'openai', got {fmt!r}",
                          field="fmt") from None


# --------------------------------------------------------------------------- to LangChain
def message_to_langchain(m: Message, fmt: FormatLike) -> list[BaseMessage]:
    """One provider message as LangChain messages. A list, because an Anthropic ``user``
    message carrying N ``tool_result`` blocks becomes N ``ToolMessage`` s, then one
    ``HumanMessage`` for its other blocks (if any).

    Raises:
        ConfigError: a role the format does not have (``field="messages"``), or a bad
            ``fmt``.
    """
    f = _fmt(fmt)
    role = m.get("role")
    content = m.get("content")
    if role in ("system", "developer"):
        return [SystemMessage(content=content if content is not None else "")]
    if f is Format.OPENAI:
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
            # included) and the calls are also on tool_calls
            calls = [{"id": b["id"], "name": b["name"], "args": b.get("input", {})}
                     for b in content if isinstance(b, Mapping) and b.get("type") == "tool_use"]
            return [AIMessage(content=list(content), tool_calls=calls)]
    raise ConfigError(f"role {role!r} cannot be converted for the {f.value} format",
                      field="messages")


def to_langchain(messages: Sequence[Message], fmt: FormatLike,
                 system: Any = None) -> list[BaseMessage]:
    """``messages`` (a history in ``fmt``) as LangChain messages.

    Args:
        messages: Anthropic Messages or OpenAI chat message dicts.
        fmt: their format (``Format`` or ``"anthropic"`` / ``"openai"``).
        system: an Anthropic top-level system prompt (str or text blocks); it becomes a
            leading ``SystemMessage``.

    Returns:
        ``SystemMessage`` / ``HumanMessage`` / ``AIMessage`` (with ``tool_calls``) /
        ``ToolMessage`` objects; ``from_langchain`` maps them back to equal dicts.

    Raises:
        ConfigError: a role the format does not have, or a bad ``fmt``.
    """
    out: list[BaseMessage] = []
    if system:
        out.append(SystemMessage(content=system if isinstance(system, str) else list(system)))
    for m in messages:
        out.extend(message_to_langchain(m, fmt))
    return out


# --------------------------------------------------------------------------- from LangChain
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


def _system_of(parts: list[SystemMessage]) -> Any:
    """The Anthropic ``system`` parameter of the system messages (None when none): one
    message's content as it is; several as one list of text blocks."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0].content
    out: list[Any] = []
    for p in parts:
        out.extend([{"type": "text", "text": p.content}] if isinstance(p.content, str)
                   else p.content)
    return out


def _convert(messages: Sequence[BaseMessage], fmt: Format
             ) -> tuple[list[dict[str, Any]], Any, list[list[int]]]:
    """:func:`from_langchain`, plus for each dict the indices of the LangChain messages it
    was made from (the middleware maps kept dicts back to the agent's own objects)."""
    out: list[dict[str, Any]] = []
    sources: list[list[int]] = []
    system: list[SystemMessage] = []
    run: list[Any] | None = None   # content of the open Anthropic tool-result user message
    for i, m in enumerate(messages):
        if isinstance(m, ToolMessage):
            if fmt is Format.OPENAI:
                d: dict[str, Any] = {"role": "tool", "tool_call_id": m.tool_call_id,
                                     "content": m.content}
                if m.name is not None:
                    d["name"] = m.name
                out.append(d)
                sources.append([i])
                continue
            if run is None:
                run = []
                out.append({"role": "user", "content": run})
                sources.append([])
            run.append(_tool_block(m))
            sources[-1].append(i)
            continue
        if isinstance(m, HumanMessage) and run is not None and isinstance(m.content, list):
            run.extend(m.content)
            sources[-1].append(i)
            run = None
            continue
        run = None
        if isinstance(m, SystemMessage):
            if fmt is Format.OPENAI:
                out.append({"role": "system", "content": m.content})
                sources.append([i])
            else:
                system.append(m)
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": m.content})
            sources.append([i])
        elif isinstance(m, AIMessage):
            out.append(_ai_to_dict(m, fmt))
            sources.append([i])
        else:
            raise ConfigError(f"messages[{i}]: cannot convert a {type(m).__name__} to the "
                              f"{fmt.value} format; fix: use System/Human/AI/ToolMessage",
                              field="messages")
    return out, _system_of(system), sources


def from_langchain(messages: Sequence[BaseMessage], fmt: FormatLike
                   ) -> tuple[list[dict[str, Any]], Any]:
    """LangChain messages as provider dicts of ``fmt``, and the system prompt.

    Anthropic: ``SystemMessage`` s become the returned ``system`` (one message's content
    as it is, several as one list of text blocks; None when there is none); a run of
    ``ToolMessage`` s becomes one ``user`` message of ``tool_result`` blocks (``status=
    "error"`` sets ``is_error``), and a ``HumanMessage`` with block content right after
    such a run joins it (the shape :func:`message_to_langchain` splits); an ``AIMessage``
    keeps its content blocks (``tool_use`` included), or gets ``tool_use`` blocks from
    ``tool_calls`` when its content has none. OpenAI: one dict per message, system
    messages included (``system`` is None); ``tool_calls`` get JSON-string ``arguments``.
    ``AIMessage.usage_metadata`` and ids are not part of a request: see
    :func:`usage_input_tokens`.

    Raises:
        ConfigError: a message type other than system/human/AI/tool (``field="messages"``,
            its index named), or a bad ``fmt``.
    """
    out, system, _ = _convert(messages, _fmt(fmt))
    return out, system


def usage_input_tokens(message: BaseMessage) -> int | None:
    """The input tokens the provider counted for the request that produced ``message``:
    ``AIMessage.usage_metadata["input_tokens"]`` (LangChain's total, cache reads and
    writes included), or None when the message carries no usage."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    n = usage.get("input_tokens")
    return int(n) if isinstance(n, int) and n > 0 else None


def _tool_schema(tool: Any, fmt: Format) -> dict[str, Any]:
    """A tool (a ``BaseTool``, a function, or a provider schema dict) as the schema of
    ``fmt``, for counting."""
    if isinstance(tool, Mapping) and ("input_schema" in tool or "function" in tool):
        return dict(tool)
    from langchain_core.utils.function_calling import convert_to_openai_tool

    spec = convert_to_openai_tool(tool)
    if fmt is Format.OPENAI:
        return spec
    fn = spec["function"]
    return {"name": fn["name"], "description": fn.get("description", ""),
            "input_schema": fn.get("parameters", {"type": "object", "properties": {}})}


def _placed(messages: list[BaseMessage], fmt: Format, block: Any) -> list[BaseMessage] | None:
    """``messages`` with ``block`` (a recalled block) placed by ``place_recall`` in their
    ``fmt`` dicts, mapped back to LangChain messages: every message the placement left as
    it was is the same object; the changed one is a copy of the agent's message with the
    new content (Anthropic), the inserted one a new ``HumanMessage`` (OpenAI). None when
    nothing was placed (no user message)."""
    dicts, _, sources = _convert(messages, fmt)
    placed = place_recall(dicts, fmt, block)
    p = next((k for k in range(len(placed)) if k >= len(dicts) or placed[k] != dicts[k]), None)
    if p is None:
        return None
    if len(placed) > len(dicts):        # a new message before dicts[p] (or at the end)
        at = sources[p][0] if p < len(dicts) else len(messages)
        return [*messages[:at], *message_to_langchain(placed[p], fmt), *messages[at:]]
    olds = [messages[i] for i in sources[p]]
    by_call = {m.tool_call_id: m for m in olds if isinstance(m, ToolMessage)}
    human = next((m for m in reversed(olds) if isinstance(m, HumanMessage)), None)
    new: list[BaseMessage] = []
    for lc in message_to_langchain(placed[p], fmt):
        if isinstance(lc, ToolMessage) and lc.tool_call_id in by_call:
            new.append(by_call[lc.tool_call_id])
        elif isinstance(lc, HumanMessage) and human is not None:
            new.append(human.model_copy(update={"content": lc.content}))
        else:
            new.append(lc)
    return [*messages[:sources[p][0]], *new, *messages[sources[p][-1] + 1:]]


# --------------------------------------------------------------------------- middleware
class CompactionMiddleware(_Base):  # type: ignore[misc,valid-type]
    """A LangChain v1 ``AgentMiddleware`` that keeps the agent's history inside its
    context window: ``create_agent(model, tools, middleware=[CompactionMiddleware(...)])``.

    Before every model call (``before_model`` / ``abefore_model``) the state's messages are
    converted with :func:`from_langchain` and handed to
    ``compactor.compact_if_needed`` (``abefore_model`` awaits it; ``before_model`` uses
    ``compact_sync``). When nothing was compacted the state is left alone (None). When the
    compactor compacted, the update replaces the state's messages as LangChain's
    ``SummarizationMiddleware`` does: ``RemoveMessage(id=REMOVE_ALL_MESSAGES)``, then the
    system messages of the state, the summary (a ``HumanMessage``; with ``fmt="openai"`` a
    ``SystemMessage``), and the kept messages -- the agent's own objects, except tool
    results the compactor cleared or shortened (copies with the new content). Calls and
    their results are never separated; every message is archived in the compactor's store
    before it can leave the context, and each compaction is a ledger record.

    Args:
        compactor: the :class:`~compactor.MessageCompactor` (default: offline summaries).
        session_id: the compactor session (default: the run's ``thread_id`` when the
            agent has a checkpointer config, else ``"default"``).
        fmt: the format the history is reasoned about in (``"anthropic"``, default, works
            for every chat model; the summary is then a user message).
        model: the model name, for the compactor's model/tier window and calibration
            (default: the ``model_name`` of the last ``AIMessage``).
        window: the provider's context window, in provider tokens (default: the
            compactor's ``window``, else its model/tier window).
        max_tokens: output tokens reserved out of the window (default: the compactor's
            ``reserve_output_tokens``).
        system: the agent's system prompt (``create_agent(system_prompt=...)`` is not in
            the state), counted.
        tools: the agent's tools (``BaseTool`` s, functions or schema dicts), counted.
        calibrate: correct our estimates to the provider's counts, from the
            ``usage_metadata`` of each response (as ``CompactingAnthropic`` does from
            ``usage``).
        calibrator: share one :class:`~compactor.adapters.Calibrator` between middlewares.
        timeout_s: the longest wait of the synchronous ``before_model``, seconds.

    Attributes:
        last_result: the :class:`~compactor.CompactionResult` of the last call.

    Raises:
        MissingExtraError: ``langchain`` is not installed (one line naming the extra).
        ConfigError: a bad ``fmt``, or ``window`` / ``timeout_s`` not positive.
    """

    def __init__(self, compactor: Any = None, *, session_id: str | None = None,
                 fmt: FormatLike = Format.ANTHROPIC, model: str | None = None,
                 window: int | None = None, max_tokens: int | None = None,
                 system: Any = None, tools: Sequence[Any] | None = None,
                 calibrate: bool = True, calibrator: Calibrator | None = None,
                 timeout_s: float = 300.0) -> None:
        require("langchain.agents.middleware", extra="langchain", what="CompactionMiddleware")
        require("langgraph.graph.message", extra="langchain", what="CompactionMiddleware")
        super().__init__()
        if window is not None and window <= 0:
            raise ConfigError(f"window must be > 0 tokens, got {window}", field="window")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s!r}",
                              field="timeout_s")
        from compactor._compactor import MessageCompactor

        self.compactor = compactor or MessageCompactor()
        self.session_id = session_id
        self.fmt = _fmt(fmt)
        self.model = model
        self.window = window
        self.max_tokens = max_tokens
        self.system = system
        # not "tools": AgentMiddleware.tools are tools the middleware adds to the agent
        self.tool_schemas = [_tool_schema(t, self.fmt) for t in tools] if tools else None
        self.calibrate = calibrate
        self.calibrator = calibrator or Calibrator()
        self.timeout_s = timeout_s
        self.last_result: Any = None
        self._last_estimate: dict[str, tuple[int, str | None]] = {}
        #: per session: the result whose recalled block the next model call carries
        self._pending: dict[str, Any] = {}

    # ------------------------------------------------------------------ internals
    def _session(self) -> str:
        if self.session_id is not None:
            return self.session_id
        try:
            from langgraph.config import get_config

            tid = (get_config().get("configurable") or {}).get("thread_id")
        except RuntimeError:   # outside a runnable context
            tid = None
        return str(tid) if tid else "default"

    def _prepare(self, messages: Sequence[BaseMessage]) -> tuple[dict[str, Any], Any]:
        """The compactor's arguments for this state, and what mapping back needs."""
        dicts, system, sources = _convert(messages, self.fmt)
        sid = self._session()
        last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
        model = self.model or (last_ai.response_metadata.get("model_name")
                               if last_ai is not None else None)
        if self.calibrate and isinstance(model, str) and last_ai is not None:
            seen = self._last_estimate.get(sid)
            n = usage_input_tokens(last_ai)
            if seen is not None and n is not None and seen[1] != last_ai.id:
                self.calibrator.observe(model, seen[0], n)
        sys_parts = [s for s in (self.system, system) if s]
        full_system: Any = None
        if len(sys_parts) == 1:
            full_system = sys_parts[0]
        elif sys_parts:
            full_system = [b for s in sys_parts for b in
                           ([{"type": "text", "text": s}] if isinstance(s, str) else s)]
        kwargs = dict(model=model, window=self._window(model), system=full_system,
                      tools=self.tool_schemas, max_tokens=self.max_tokens, session_id=sid,
                      fmt=self.fmt)
        return kwargs, (dicts, sources, sid, last_ai)

    def _window(self, model: str | None) -> int | None:
        return call_window(self.compactor, self.calibrator, window=self.window, model=model,
                           max_tokens=self.max_tokens, calibrate=self.calibrate)

    def _update(self, messages: Sequence[BaseMessage], r: Any, ctx: Any) -> dict[str, Any] | None:
        """The state update for result ``r`` (None when nothing was compacted)."""
        from langchain_core.messages import RemoveMessage
        from langgraph.graph.message import REMOVE_ALL_MESSAGES

        dicts, sources, sid, last_ai = ctx
        self.last_result = r
        self._last_estimate[sid] = (r.tokens_after, last_ai.id if last_ai is not None else None)
        if r.request_messages is not None and r.recall:
            self._pending[sid] = r        # the block goes into the model call, not the state
        else:
            self._pending.pop(sid, None)
        if not r.compacted:
            return None
        new = [m for m in messages if isinstance(m, SystemMessage)] \
            if self.fmt is Format.ANTHROPIC else []
        by_call = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
        j = 0
        for d in r.messages:
            k = next((k for k in range(j, len(dicts)) if dicts[k] == d), None)
            if k is not None:               # kept as it was: the agent's own objects
                new.extend(messages[i] for i in sources[k])
                j = k + 1
                continue
            for lc in message_to_langchain(d, self.fmt):
                orig = by_call.get(lc.tool_call_id) if isinstance(lc, ToolMessage) else None
                new.append(orig.model_copy(update={"content": lc.content}) if orig is not None
                           else lc)
        return {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *new]}

    def _with_recall(self, request: Any) -> Any:
        """``request`` with the recalled block of this session's last result placed in its
        messages as ``place_recall`` places it (the request itself when there is none);
        the calibration estimate then counts the block. The block stays pending until the
        next ``before_model`` of the session, so a retry of the model call (an outer
        middleware calling the handler again) carries it too."""
        sid = self._session()
        r = self._pending.get(sid)
        if r is None:
            return request
        messages = _placed(list(request.messages), self.fmt, r.recall)
        if messages is None:
            return request
        seen = self._last_estimate.get(sid)
        self._last_estimate[sid] = (r.sent_tokens, seen[1] if seen is not None else None)
        return request.override(messages=messages)

    # ------------------------------------------------------------------ hooks
    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Compact the state's messages before the model call (synchronous agents).

        Returns:
            None (nothing to change), or the update that replaces the state's messages.

        Raises:
            InvalidHistoryError, ContextOverflowError, ConfigError: from the compactor.
            TimeoutError: the compaction took longer than ``timeout_s``.
        """
        messages = state["messages"]
        kwargs, ctx = self._prepare(messages)
        if not ctx[0]:      # no conversation message yet: nothing to compact
            return None
        r = self.compactor.compact_sync(ctx[0], timeout_s=self.timeout_s, **kwargs)
        return self._update(messages, r, ctx)

    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Compact the state's messages before the model call (``ainvoke``/``astream``).

        Returns:
            None (nothing to change), or the update that replaces the state's messages.

        Raises:
            InvalidHistoryError, ContextOverflowError, ConfigError: from the compactor.
        """
        messages = state["messages"]
        kwargs, ctx = self._prepare(messages)
        if not ctx[0]:      # no conversation message yet: nothing to compact
            return None
        r = await self.compactor.compact_if_needed(ctx[0], **kwargs)
        return self._update(messages, r, ctx)

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        """Call the model with question-time recall's block, when the last ``before_model``
        of this session placed one, added to the request's messages (the newest user
        message's last text block; with ``fmt="openai"`` a user message before the newest
        user message, or after a trailing tool result). The block is in this model call
        only: the agent's state never holds it."""
        return handler(self._with_recall(request))

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        """:meth:`wrap_model_call` for ``ainvoke``/``astream``."""
        return await handler(self._with_recall(request))


__all__ = ["CompactionMiddleware", "from_langchain", "message_to_langchain", "to_langchain",
           "usage_input_tokens"]
