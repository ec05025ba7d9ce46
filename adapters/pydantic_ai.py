"""Pydantic AI adapter: converters between Pydantic AI's ``ModelMessage`` lists and our
Anthropic-format dicts, and :class:`CompactingHistoryProcessor`, a history processor that
keeps an agent's history inside its context window.

    processor = CompactingHistoryProcessor(compactor, session_id="run-42")
    agent = Agent(model, capabilities=[CompactingCapability(processor)])  # pydantic-ai 2.x
    agent = Agent(model, history_processors=[processor])                  # pydantic-ai 1.x

(``CompactingCapability`` also sends question-time recall's block, in the request only; a
history processor's output becomes the run's history, so registered as one -- including
2.x's ``ProcessHistory(processor)`` -- the processor sends no block.)

One ``ModelRequest`` is one ``user`` message and one ``ModelResponse`` one ``assistant``
message: ``UserPromptPart`` -> text, ``ToolCallPart`` -> ``tool_use``, ``ToolReturnPart``
(and a legacy ``RetryPromptPart`` answering a call) -> ``tool_result``, ``TextPart`` ->
text, ``ThinkingPart`` -> ``thinking``; ``SystemPromptPart`` s become the ``system``
prompt. A tool call's part and its return part therefore stay in the units the compactor
never splits. The format is only how the compactor reasons about the history: the agent's
own model (Anthropic, OpenAI or any other) still serializes the messages the processor
returns, and every kept message is the agent's own object.

See ``docs/adapters/pydantic-ai.md``. Needs ``pydantic-ai-slim`` (``pip install
'agent-context-compactor[pydantic-ai]'``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from compactor._errors import ConfigError
from compactor._format import Format, is_summary
from compactor._optional import require
from compactor._recall import place_recall

from ._calibration import Calibrator, call_window

require("pydantic_ai", extra="pydantic-ai", what="compactor.adapters.pydantic_ai")
from pydantic_ai import RunContext  # noqa: E402
from pydantic_ai.messages import (ModelMessage, ModelRequest, ModelResponse,  # noqa: E402
                                  SystemPromptPart, TextPart, ThinkingPart, ToolCallPart,
                                  ToolReturnPart, UserPromptPart)

try:  # deprecated in pydantic-ai 2 (kept for histories built by hand)
    from pydantic_ai.messages import RetryPromptPart
except ImportError:  # pragma: no cover
    RetryPromptPart = None  # type: ignore[assignment,misc]
try:  # pydantic-ai 2: feedback that answers no tool call
    from pydantic_ai.messages import RetryFeedbackPart
except ImportError:  # pragma: no cover - pydantic-ai 1.x
    RetryFeedbackPart = None  # type: ignore[assignment,misc]
try:  # pydantic-ai 2: capabilities, whose request hook can send what history never holds
    from pydantic_ai.capabilities import AbstractCapability as _Capability
except ImportError:  # pragma: no cover - pydantic-ai 1.x
    _Capability = None  # type: ignore[assignment,misc]

FMT = Format.ANTHROPIC


# --------------------------------------------------------------------------- from Pydantic AI
def _text(content: Any) -> str:
    """A part's content as text (str as it is; anything else as its JSON)."""
    if isinstance(content, str):
        return content
    try:
        return json.dumps(content, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(content)


def _user_block(item: Any) -> dict[str, Any]:
    """One item of a ``UserPromptPart`` sequence as a content block (non-text items --
    images, documents, audio -- as a text block naming them, for counting)."""
    if isinstance(item, str):
        return {"type": "text", "text": item}
    ref = getattr(item, "url", None) or getattr(item, "identifier", None) or ""
    return {"type": "text", "text": f"[{type(item).__name__} {ref}]".replace(" ]", "]")}


def _request_blocks(m: Any) -> tuple[Any, list[SystemPromptPart]]:
    """The ``user`` content of a ``ModelRequest`` (None when it has none) and its system
    prompt parts."""
    system = [p for p in m.parts if isinstance(p, SystemPromptPart)]
    parts = [p for p in m.parts if not isinstance(p, SystemPromptPart)]
    if len(parts) == 1 and isinstance(parts[0], UserPromptPart) \
            and isinstance(parts[0].content, str):
        return parts[0].content, system
    blocks: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, UserPromptPart):
            items = [p.content] if isinstance(p.content, str) else list(p.content)
            blocks.extend(_user_block(x) for x in items)
        elif isinstance(p, ToolReturnPart):
            b: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.tool_call_id,
                                 "content": _text(p.content)}
            if getattr(p, "outcome", "success") != "success":
                b["is_error"] = True
            blocks.append(b)
        elif RetryPromptPart is not None and isinstance(p, RetryPromptPart):
            if p.tool_name is not None:
                blocks.append({"type": "tool_result", "tool_use_id": p.tool_call_id,
                               "content": _text(p.content), "is_error": True})
            else:
                blocks.append({"type": "text", "text": _text(p.content)})
        elif RetryFeedbackPart is not None and isinstance(p, RetryFeedbackPart):
            blocks.append({"type": "text", "text": _text(p.content)})
        # other parts (instruction and availability deltas...) are not message content
    return (blocks or None), system


def _response_blocks(m: Any) -> list[dict[str, Any]] | None:
    """The ``assistant`` content of a ``ModelResponse`` (None when it has none)."""
    blocks: list[dict[str, Any]] = []
    for p in m.parts:
        if isinstance(p, ToolCallPart):
            blocks.append({"type": "tool_use", "id": p.tool_call_id, "name": p.tool_name,
                           "input": p.args_as_dict()})
        elif isinstance(p, ThinkingPart):
            if p.signature:
                blocks.append({"type": "thinking", "thinking": p.content,
                               "signature": p.signature})
            elif p.content:   # a thinking part another provider returned: text to count
                blocks.append({"type": "text", "text": p.content})
        elif isinstance(p, TextPart):
            if p.content:
                blocks.append({"type": "text", "text": p.content})
        elif getattr(p, "content", None):
            blocks.append({"type": "text", "text": _text(p.content)})
    return blocks or None


def _convert(messages: Sequence[ModelMessage]
             ) -> tuple[list[dict[str, Any]], Any, list[list[int]], list[SystemPromptPart]]:
    """:func:`from_pydantic_ai`, plus for each dict the indices of the messages it was made
    from (a message with no content joins the next dict's; a trailing one the last
    dict's), and the system prompt parts."""
    out: list[dict[str, Any]] = []
    sources: list[list[int]] = []
    system: list[SystemPromptPart] = []
    pending: list[int] = []
    for i, m in enumerate(messages):
        if isinstance(m, ModelRequest):
            content, sys_parts = _request_blocks(m)
            system.extend(sys_parts)
            role = "user"
        elif isinstance(m, ModelResponse):
            content, role = _response_blocks(m), "assistant"
        else:
            raise ConfigError(f"messages[{i}]: a {type(m).__name__} is not a ModelMessage; "
                              "fix: pass ModelRequest/ModelResponse objects", field="messages")
        if content is None:
            pending.append(i)
            continue
        out.append({"role": role, "content": content})
        sources.append([*pending, i])
        pending = []
    if pending and sources:
        sources[-1].extend(pending)
    text = [p.content for p in system]
    sys_value = None if not text else "\n\n".join(text)
    return out, sys_value, sources, system


def from_pydantic_ai(messages: Sequence[ModelMessage]) -> tuple[list[dict[str, Any]], Any]:
    """Pydantic AI messages as Anthropic Messages dicts, and the system prompt.

    Each ``ModelRequest`` is a ``user`` message: a string when it holds one
    ``UserPromptPart`` with string content (besides system prompt parts), else blocks --
    ``text`` per prompt item, ``tool_result`` per ``ToolReturnPart`` (content as
    ``model_response_str`` gives it; ``is_error`` unless ``outcome == "success"``).
    Each ``ModelResponse`` is an ``assistant`` message of ``text`` (``TextPart``),
    ``thinking`` (a ``ThinkingPart`` with its signature; without one, its text) and
    ``tool_use`` (``ToolCallPart``, ``input`` = ``args_as_dict()``) blocks. Messages with
    no content are left out. ``SystemPromptPart`` contents, joined by blank lines, are the
    returned system prompt (None when there is none). Usage and timestamps are not part of
    a request.

    Raises:
        ConfigError: an element is not a ``ModelRequest`` / ``ModelResponse`` (its index
            named).
    """
    out, system, _, _ = _convert(messages)
    return out, system


# --------------------------------------------------------------------------- to Pydantic AI
def _tool_names(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {b["id"]: b.get("name", "") for m in messages if isinstance(m.get("content"), list)
            for b in m["content"] if isinstance(b, Mapping) and b.get("type") == "tool_use"}


def message_to_pydantic_ai(m: Mapping[str, Any], tool_names: Mapping[str, str] | None = None
                           ) -> ModelMessage:
    """One Anthropic message dict as a ``ModelRequest`` (``user``) or ``ModelResponse``
    (``assistant``). ``tool_names`` maps ``tool_use`` ids to tool names (a
    ``ToolReturnPart`` needs its tool's name; unknown ids get ``""``).

    Raises:
        ConfigError: a role other than user/assistant (``field="messages"``).
    """
    role, content = m.get("role"), m.get("content")
    names = tool_names or {}
    if role == "user":
        if isinstance(content, str):
            return ModelRequest(parts=[UserPromptPart(content)])
        parts: list[Any] = []
        texts: list[str] = []
        for b in content or []:
            if b.get("type") == "tool_result":
                if texts:
                    parts.append(UserPromptPart(texts))
                    texts = []
                inner = b.get("content", "")
                parts.append(ToolReturnPart(
                    tool_name=names.get(b.get("tool_use_id"), ""),
                    tool_call_id=b.get("tool_use_id"),
                    content=inner if isinstance(inner, str) else _text(inner),
                    **({"outcome": "failed"} if b.get("is_error") else {})))
            else:
                texts.append(str(b.get("text", "")) if b.get("type") == "text" else _text(b))
        if texts:
            parts.append(UserPromptPart(texts))
        return ModelRequest(parts=parts)
    if role == "assistant":
        if isinstance(content, str):
            return ModelResponse(parts=[TextPart(content)] if content else [])
        rparts: list[Any] = []
        for b in content or []:
            t = b.get("type")
            if t == "tool_use":
                rparts.append(ToolCallPart(tool_name=b["name"], args=dict(b.get("input") or {}),
                                           tool_call_id=b["id"]))
            elif t == "thinking":
                rparts.append(ThinkingPart(content=b.get("thinking", ""),
                                           signature=b.get("signature")))
            else:
                rparts.append(TextPart(str(b.get("text", "")) if t == "text" else _text(b)))
        return ModelResponse(parts=rparts)
    raise ConfigError(f"role {role!r} cannot be converted to a Pydantic AI message; fix: "
                      "pass Anthropic user/assistant messages", field="messages")


def to_pydantic_ai(messages: Sequence[Mapping[str, Any]], system: Any = None
                   ) -> list[ModelMessage]:
    """Anthropic message dicts as Pydantic AI messages (:func:`message_to_pydantic_ai`
    each); ``system`` (a str, or text blocks) becomes a ``SystemPromptPart`` at the start of
    the first ``ModelRequest``. :func:`from_pydantic_ai` maps the result back to equal
    dicts (text, ``tool_use``, string ``tool_result``, signed ``thinking`` blocks).

    Raises:
        ConfigError: a role other than user/assistant.
    """
    names = _tool_names(messages)
    out = [message_to_pydantic_ai(m, names) for m in messages]
    if system:
        text = system if isinstance(system, str) else "\n\n".join(
            str(b.get("text", "")) for b in system if isinstance(b, Mapping))
        out = _with_system(out, [SystemPromptPart(text)])
    return out


def _with_system(messages: list[Any], parts: list[SystemPromptPart]) -> list[Any]:
    """``messages`` with ``parts`` at the start of the first ``ModelRequest`` (a new
    request first when the list starts with a response)."""
    if messages and isinstance(messages[0], ModelRequest):
        return [dataclasses.replace(messages[0], parts=[*parts, *messages[0].parts]),
                *messages[1:]]
    return [ModelRequest(parts=list(parts)), *messages]


# --------------------------------------------------------------------------- processor
class CompactingHistoryProcessor:
    """A Pydantic AI history processor that compacts the history before each model request.

    Use it as ``Agent(..., capabilities=[CompactingCapability(processor)])`` (pydantic-ai
    2.x; ``ProcessHistory(processor)`` works too, without recall's block) or
    ``Agent(..., history_processors=[processor])`` (1.x). It converts the history with
    :func:`from_pydantic_ai`, calls ``compactor.compact_if_needed`` and, when the compactor
    compacted, returns the summary as a ``ModelRequest`` (carrying the system prompt parts
    when the message holding them left the context) followed by the kept messages -- the
    agent's own objects, except requests whose tool returns were cleared or shortened
    (copies with the new content). A tool call and its return are never separated; every
    message is archived in the compactor's store before it can leave the context, and each
    compaction is a ledger record. When nothing was compacted the history is returned as
    it came.

    Args:
        compactor: the :class:`~compactor.MessageCompactor` (default: offline summaries).
        session_id: the compactor session (default: the run's ``conversation_id`` when
            pydantic-ai has one, else ``"default"``).
        model: the model name, for the compactor's model/tier window and calibration
            (default: the run's model name).
        window: the provider's context window, in provider tokens (default: the
            compactor's ``window``, else its model/tier window).
        max_tokens: output tokens reserved out of the window (default: the compactor's
            ``reserve_output_tokens``).
        tools: the tool schemas the agent sends (Anthropic ``{"name", "description",
            "input_schema"}`` dicts), counted.
        calibrate: correct our estimates to the provider's counts, from the
            ``usage.input_tokens`` of each ``ModelResponse``.
        calibrator: share one :class:`~compactor.adapters.Calibrator` between processors.

    Attributes:
        last_result: the :class:`~compactor.CompactionResult` of the last call.

    Raises:
        ConfigError: ``window`` not positive.
    """

    def __init__(self, compactor: Any = None, *, session_id: str | None = None,
                 model: str | None = None, window: int | None = None,
                 max_tokens: int | None = None, tools: Sequence[Mapping[str, Any]] | None = None,
                 calibrate: bool = True, calibrator: Calibrator | None = None) -> None:
        if window is not None and window <= 0:
            raise ConfigError(f"window must be > 0 tokens, got {window}", field="window")
        from compactor._compactor import MessageCompactor

        self.compactor = compactor or MessageCompactor()
        self.session_id = session_id
        self.model = model
        self.window = window
        self.max_tokens = max_tokens
        self.tools = list(tools) if tools else None
        self.calibrate = calibrate
        self.calibrator = calibrator or Calibrator()
        self.last_result: Any = None
        self._last_estimate: dict[str, tuple[int, Any]] = {}

    def _window(self, model: str | None) -> int | None:
        return call_window(self.compactor, self.calibrator, window=self.window, model=model,
                           max_tokens=self.max_tokens, calibrate=self.calibrate)

    async def __call__(self, ctx: RunContext[Any], messages: list[ModelMessage]
                       ) -> list[ModelMessage]:
        """The history to send: ``messages`` as they came, or compacted. (A recalled block
        is not in it: a history processor's output becomes the run's history; see
        :class:`CompactingCapability`.)

        Raises:
            InvalidHistoryError, ContextOverflowError, ConfigError: from the compactor.
        """
        return (await self._process(ctx, messages))[0]

    async def _process(self, ctx: RunContext[Any], messages: list[ModelMessage]
                       ) -> tuple[list[ModelMessage], list[ModelMessage]]:
        """The history (``messages`` as they came, or compacted) and the messages to send
        for this request: the history with question-time recall's block, when one was
        placed, added to its newest user turn (else the history itself)."""
        if not messages:
            return messages, messages
        dicts, system, sources, sys_parts = _convert(messages)
        if not dicts:
            return messages, messages
        sid = self.session_id or getattr(ctx, "conversation_id", None) or "default"
        run_model = getattr(getattr(ctx, "model", None), "model_name", None)
        model = self.model or (run_model if isinstance(run_model, str) else None)
        last = next((m for m in reversed(messages) if isinstance(m, ModelResponse)), None)
        key = None if last is None else (last.provider_response_id, str(last.timestamp))
        if self.calibrate and model and last is not None:
            seen = self._last_estimate.get(sid)
            n = int(getattr(last.usage, "input_tokens", 0) or 0)
            if seen is not None and n > 0 and seen[1] != key:
                self.calibrator.observe(model, seen[0], n)
        r = await self.compactor.compact_if_needed(
            dicts, model=model, window=self._window(model), system=system, tools=self.tools,
            max_tokens=self.max_tokens, session_id=sid, fmt=FMT)
        self.last_result = r
        self._last_estimate[sid] = (r.tokens_after, key)
        history = (self._back(messages, dicts, sources, sys_parts, r.messages) if r.compacted
                   else messages)
        if r.request_messages is None or not r.recall:
            return history, history
        sending = _with_block(history, r.recall)
        if sending is None:
            return history, history
        self._last_estimate[sid] = (r.sent_tokens, key)   # the block is in what is sent
        return history, sending

    @staticmethod
    def _back(messages: Sequence[Any], dicts: list[dict[str, Any]], sources: list[list[int]],
              sys_parts: list[SystemPromptPart], result: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The compacted history as Pydantic AI messages: kept dicts as the messages they
        came from; the summary as a new ``ModelRequest``; a request whose tool returns (or
        string prompt) the compactor changed as a copy of its original with the new
        content."""
        names = _tool_names(dicts)
        owner = {b["tool_use_id"]: k for k, d in enumerate(dicts) if isinstance(d["content"], list)
                 for b in d["content"] if b.get("type") == "tool_result"}
        out: list[Any] = []
        j = 0
        for d in result:
            k = next((k for k in range(j, len(dicts)) if dicts[k] == d), None)
            if k is not None:
                out.extend(messages[i] for i in sources[k])
                j = k + 1
                continue
            if is_summary(d, FMT):
                out.append(message_to_pydantic_ai(d, names))
                continue
            content = d.get("content")
            new_results = {b["tool_use_id"]: b.get("content", "") for b in content or []
                           if isinstance(content, list) and b.get("type") == "tool_result"}
            if new_results:
                k = owner.get(next(iter(new_results)))
            elif isinstance(content, str):
                k = next((k for k in range(j, len(dicts)) if dicts[k]["role"] == d["role"]
                          and isinstance(dicts[k]["content"], str)), None)
            else:
                k = None
            if k is None:
                out.append(message_to_pydantic_ai(d, names))
                continue
            orig = messages[sources[k][-1]]
            parts = []
            for p in orig.parts:
                if isinstance(p, ToolReturnPart) and p.tool_call_id in new_results:
                    c = new_results[p.tool_call_id]
                    p = dataclasses.replace(p, content=c if isinstance(c, str) else _text(c))
                elif isinstance(p, UserPromptPart) and isinstance(content, str):
                    p = dataclasses.replace(p, content=content)
                parts.append(p)
            out.extend(messages[i] for i in sources[k][:-1])
            out.append(dataclasses.replace(orig, parts=parts))
            j = k + 1
        held = any(isinstance(p, SystemPromptPart) for m in out if isinstance(m, ModelRequest)
                   for p in m.parts)
        if sys_parts and not held:
            out = _with_system(out, list(sys_parts))
        return out


def _with_block(messages: Sequence[Any], block: Any) -> list[Any] | None:
    """``messages`` with ``block`` (a recalled block) where ``place_recall`` puts it in
    their Anthropic dicts -- the last text of the newest user message that is not the
    summary -- as a ``UserPromptPart`` appended to a copy of that ``ModelRequest``; every
    other message the same object. None when there is no such message."""
    dicts, _, sources, _ = _convert(messages)
    placed = place_recall(dicts, FMT, block)
    p = next((k for k in range(len(placed)) if placed[k] != dicts[k]), None)
    if p is None:
        return None
    i = next(i for i in reversed(sources[p]) if isinstance(messages[i], ModelRequest)
             and _request_blocks(messages[i])[0] is not None)
    out = list(messages)
    out[i] = dataclasses.replace(messages[i], parts=[*messages[i].parts,
                                                     UserPromptPart(block.text)])
    return out


if _Capability is not None:
    @dataclasses.dataclass
    class CompactingCapability(_Capability[Any]):  # type: ignore[misc,valid-type]
        """A Pydantic AI 2.x capability that runs a :class:`CompactingHistoryProcessor`
        before each model request and sends question-time recall's block:
        ``Agent(model, capabilities=[CompactingCapability(processor)])``.

        Its ``before_model_request`` sets the run's history (``RunContext.messages``) to
        what the processor returns, as ``ProcessHistory(processor)`` does, and sends that
        history -- plus, when recall placed a block (a compactor with a store and
        ``recall_share > 0``), the block as the last ``UserPromptPart`` of a copy of the
        newest user ``ModelRequest``. The copy is in this request only
        (``request_context.messages``): the run's history, ``all_messages()`` and the next
        run never hold it. The processor's calibration estimate of the request then counts
        the block's tokens.

        Args:
            processor: the :class:`CompactingHistoryProcessor` (its compactor, session,
                window and calibration).
        """

        processor: CompactingHistoryProcessor

        async def before_model_request(self, ctx: RunContext[Any], request_context: Any) -> Any:
            """Compact the history into ``ctx.messages``; send it with the recalled block.

            Raises:
                InvalidHistoryError, ContextOverflowError, ConfigError: from the compactor.
            """
            history, sending = await self.processor._process(ctx, list(request_context.messages))
            request_context.messages = list(sending)   # assigned: this request only
            ctx.messages[:] = history
            return request_context

        @classmethod
        def get_serialization_name(cls) -> str | None:
            return None   # takes a processor object: not spec-serializable


__all__ = ["CompactingCapability", "CompactingHistoryProcessor", "from_pydantic_ai",
           "message_to_pydantic_ai", "to_pydantic_ai"]
