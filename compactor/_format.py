"""The three wire formats, read without copying: Anthropic Messages API, OpenAI chat
completions and OpenAI Responses API input items.

Messages stay the caller's own dicts; nothing here mutates them. These helpers answer
the questions the validator, the unit grouping and the token counter ask of a message:
its role, its content blocks, the tool call ids it opens and the ids it answers.

A Responses history is a list of *items*: ``message`` items (``{"type": "message",
"role", "content"}``, or the easy-input form without ``type``), ``function_call``,
``function_call_output``, ``reasoning``, ``compaction`` and the built-in tools' items.
Every helper here that takes "a message" takes such an item too; :func:`role_of` gives
an item the role the unit grouping reads (model output is ``assistant``, a call's output
is ``tool``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._errors import InvalidHistoryError

Message = Mapping[str, Any]

#: Opening and closing tags of the summary message the compactor inserts.
SUMMARY_OPEN = "<conversation_summary>"
SUMMARY_CLOSE = "</conversation_summary>"

#: A message dict carrying ``{PIN_KEY: True}`` is pinned: kept verbatim by every
#: compaction. Strip it (``strip_metadata``) before sending; the adapters do.
PIN_KEY = "compactor_pin"
#: Message keys of priority and time to live (see ``compactor._plan``).
PRIORITY_KEY = "compactor_priority"
TTL_KEY = "compactor_ttl"
#: This package's own message keys (pin, priority, time to live): stripped before sending.
OWN_KEYS = frozenset({PIN_KEY, PRIORITY_KEY, TTL_KEY})


class Format(str, enum.Enum):
    """The wire format of a history. ``ANTHROPIC``: Messages API (``system`` is a top-level
    parameter, roles ``user``/``assistant``, content blocks). ``OPENAI``: chat completions
    (``system``/``developer``/``user``/``assistant``/``tool`` roles, ``tool_calls``).
    ``RESPONSES``: OpenAI Responses API ``input`` items (``message``, ``function_call``,
    ``function_call_output``, ``reasoning``, ``compaction``...; the system prompt is the
    ``instructions`` parameter or leading ``system``/``developer`` messages)."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    RESPONSES = "responses"


_OPENAI_ONLY_ROLES = {"system", "developer", "tool"}
_ANTHROPIC_BLOCKS = {"tool_use", "tool_result", "thinking", "redacted_thinking", "image", "document"}

#: Responses API call items and the item type that answers each, paired by ``call_id``
#: (openai-python ``types/responses/response_input_item_param.py``).
RESPONSES_CALLS: dict[str, str] = {
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
    "computer_call": "computer_call_output",
}
_PAIRED_OUTPUTS = frozenset(RESPONSES_CALLS.values())
#: Item types that answer a call (the ``tool`` role of :func:`role_of`).
RESPONSES_OUTPUTS = frozenset({*RESPONSES_CALLS.values(), "local_shell_call_output",
                               "shell_call_output", "apply_patch_call_output",
                               "mcp_approval_response"})
#: Item types the model produces (the ``assistant`` role of :func:`role_of`): reasoning,
#: calls of our tools and the built-in tools' calls, which have no output item of ours.
RESPONSES_MODEL_ITEMS = frozenset({"reasoning", *RESPONSES_CALLS, "web_search_call",
                                   "file_search_call", "image_generation_call",
                                   "code_interpreter_call", "local_shell_call", "shell_call",
                                   "apply_patch_call", "mcp_call", "mcp_list_tools",
                                   "mcp_approval_request", "tool_search_call"})
#: Every item type this package knows in a Responses history; others pass through as
#: units of their own.
RESPONSES_ITEMS = frozenset({"message", "compaction", "item_reference", *RESPONSES_OUTPUTS,
                             *RESPONSES_MODEL_ITEMS})
_RESPONSES_BLOCKS = {"input_text", "output_text", "input_image", "input_file", "refusal"}


def detect_format(messages: Sequence[Message]) -> Format:
    """Guess the wire format of ``messages``.

    Responses when an item has a ``type`` of :data:`RESPONSES_ITEMS`, has no ``role``
    (but a string ``type``), or has a content block only the Responses API uses
    (``input_text``, ``output_text``, ``input_image``, ``input_file``, ``refusal``);
    otherwise OpenAI when a message has role ``system``/``developer``/``tool`` or
    ``tool_calls``; Anthropic when a content block has an Anthropic-only type; Anthropic
    for plain text-only ``user``/``assistant`` histories, which are valid in all three.
    A role ``tool`` or ``tool_calls`` decides OpenAI at once (the Responses API has
    neither); a ``system``/``developer`` message only makes OpenAI the answer unless a
    Responses item follows.

    Raises:
        InvalidHistoryError: an item is not a mapping with a string ``role`` or ``type``.
    """
    tentative: Format | None = None
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            if isinstance(m, Mapping) and isinstance(m.get("type"), str):
                return Format.RESPONSES
            raise InvalidHistoryError(
                f"messages[{i}] is not a message: expected a dict with a string 'role' "
                "(or a Responses item with a string 'type'); fix: pass a list of message "
                "dicts", index=i, rule="shape")
        if m.get("type") in RESPONSES_ITEMS:
            return Format.RESPONSES
        if m["role"] == "tool" or m.get("tool_calls"):
            return Format.OPENAI
        if m["role"] in _OPENAI_ONLY_ROLES:
            tentative = Format.OPENAI
        content = m.get("content")
        if isinstance(content, list):
            for b in content:
                if isinstance(b, Mapping):
                    t = b.get("type")
                    if t in _RESPONSES_BLOCKS:
                        return Format.RESPONSES
                    if t in _ANTHROPIC_BLOCKS and tentative is None:
                        return Format.ANTHROPIC
    return tentative or Format.ANTHROPIC


def item_type(message: Message) -> str:
    """The Responses item type of ``message``: its ``type``, or ``"message"`` for the
    easy-input form (a ``role`` and no ``type``)."""
    t = message.get("type")
    return t if isinstance(t, str) else "message"


def role_of(message: Message, fmt: Format) -> str | None:
    """The role the unit grouping reads. For the two chat formats, ``message["role"]``.
    For a Responses item: a message's own role; ``assistant`` for what the model produces
    (:data:`RESPONSES_MODEL_ITEMS`: reasoning, function and built-in tool calls);
    ``tool`` for what answers a call (:data:`RESPONSES_OUTPUTS`); otherwise the item's
    type (``compaction``, ``item_reference``, unknown types)."""
    role = message.get("role")
    if fmt is not Format.RESPONSES:
        return role if isinstance(role, str) else None
    t = message.get("type")
    if t is None or t == "message":
        return role if isinstance(role, str) else None
    if t in RESPONSES_MODEL_ITEMS:
        return "assistant"
    if t in RESPONSES_OUTPUTS:
        return "tool"
    return str(t)


def blocks(message: Message) -> list[Mapping[str, Any]]:
    """The content blocks of a message; a string content is one ``text`` block. A
    Responses item other than a message has none (a reasoning item's ``content`` is its
    reasoning text, not content blocks)."""
    content = message.get("content")
    if content is not None and "type" in message and message["type"] != "message" \
            and message["type"] in RESPONSES_ITEMS:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, Mapping)]
    return []


def calls_opened(message: Message, fmt: Format) -> list[str]:
    """Ids of the tool calls an assistant message opens (``tool_use`` / ``tool_calls``;
    Responses: the ``call_id`` of a ``function_call``/``custom_tool_call``/
    ``computer_call`` item)."""
    if fmt is Format.RESPONSES:
        return [str(message.get("call_id"))] if message.get("type") in RESPONSES_CALLS else []
    if message.get("role") != "assistant":
        return []
    if fmt is Format.ANTHROPIC:
        return [str(b.get("id")) for b in blocks(message) if b.get("type") == "tool_use"]
    return [str(c.get("id")) for c in (message.get("tool_calls") or []) if isinstance(c, Mapping)]


def calls_answered(message: Message, fmt: Format) -> list[str]:
    """Ids a message answers: ``tool_result`` blocks (Anthropic), a ``tool`` message
    (OpenAI) or the ``call_id`` of a call's output item (Responses)."""
    if fmt is Format.RESPONSES:
        t = message.get("type")
        return [str(message.get("call_id"))] if t in _PAIRED_OUTPUTS else []
    if fmt is Format.ANTHROPIC:
        return [str(b.get("tool_use_id")) for b in blocks(message) if b.get("type") == "tool_result"]
    if message.get("role") == "tool":
        return [str(message.get("tool_call_id"))]
    return []


def text_of(message: Message) -> str:
    """All human-readable text of a message, blocks joined by newlines: text, thinking,
    tool inputs (as JSON), tool results and OpenAI ``function.arguments``; of a Responses
    item also ``name(arguments)`` of a call, a call's output, and a reasoning item's
    summary text (its encrypted content is not text). Used for summaries, must-keep
    extraction and probe containment, not for token counting."""
    import json

    parts: list[str] = []
    t0 = message.get("type")
    if t0 in RESPONSES_ITEMS and t0 != "message":
        return _item_text(message)
    for b in blocks(message):
        t = b.get("type")
        if t == "text":
            parts.append(str(b.get("text", "")))
        elif t == "thinking":
            parts.append(str(b.get("thinking", "")))
        elif t == "tool_use":
            parts.append(f"{b.get('name')}({json.dumps(b.get('input', {}), ensure_ascii=False)})")
        elif t == "tool_result":
            parts.append(tool_result_text(b))
        elif t in ("input_text", "output_text"):
            parts.append(str(b.get("text", "")))
        elif t == "refusal":
            parts.append(str(b.get("refusal", "")))
    for c in message.get("tool_calls") or []:
        fn = c.get("function") or {}
        parts.append(f"{fn.get('name')}({fn.get('arguments', '')})")
    return "\n".join(p for p in parts if p)


def output_text(item: Mapping[str, Any]) -> str:
    """The text of a Responses call output's ``output`` (a string, or a list of
    ``input_text``/``output_text`` parts)."""
    c = item.get("output")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(str(x.get("text", "")) for x in c
                         if isinstance(x, Mapping) and x.get("type") in ("input_text",
                                                                         "output_text", "text"))
    return ""


def _item_text(item: Mapping[str, Any]) -> str:
    """Readable text of a Responses item other than a message."""
    t = item.get("type")
    if t == "function_call":
        return f"{item.get('name')}({item.get('arguments', '')})"
    if t == "custom_tool_call":
        return f"{item.get('name')}({item.get('input', '')})"
    if t in RESPONSES_OUTPUTS:
        return output_text(item)
    if t == "reasoning":
        parts = [str(x.get("text", "")) for key in ("summary", "content")
                 for x in (item.get(key) or []) if isinstance(x, Mapping)]
        return "\n".join(p for p in parts if p)
    return ""


def tool_result_text(block: Mapping[str, Any]) -> str:
    """The text of an Anthropic ``tool_result`` block (string or list-of-blocks content)."""
    c = block.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(str(x.get("text", "")) for x in c
                         if isinstance(x, Mapping) and x.get("type") == "text")
    return ""


def is_summary(message: Message, fmt: Format) -> bool:
    """True for a summary message this package inserted (by its tag): Anthropic a
    ``user`` message, OpenAI a ``system`` message, Responses a ``developer`` message item."""
    role = message.get("role")
    if (fmt is Format.ANTHROPIC and role != "user") or (fmt is Format.OPENAI and role != "system") \
            or (fmt is Format.RESPONSES and (role != "developer"
                                             or message.get("type", "message") != "message")):
        return False
    content = message.get("content")
    if isinstance(content, list):
        content = content[0].get("text") if content and isinstance(content[0], Mapping) else None
    return isinstance(content, str) and content.startswith(SUMMARY_OPEN)


def is_pinned(message: Message) -> bool:
    """True when the message carries the pin flag (``{PIN_KEY: True}``)."""
    return bool(message.get(PIN_KEY))


def strip_metadata(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """A copy of ``messages`` without this package's own keys (:data:`OWN_KEYS`: pin,
    priority, time to live), ready to send. Messages without such keys are returned as
    the same objects."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if not OWN_KEYS.isdisjoint(m):
            out.append({k: v for k, v in m.items() if k not in OWN_KEYS})
        else:
            out.append(m)  # type: ignore[arg-type]
    return out


def leading_system_count(messages: Sequence[Message], fmt: Format) -> int:
    """How many messages at the start are the system prompt (OpenAI and Responses
    ``system``/``developer`` messages), not counting a summary this package inserted;
    always 0 for Anthropic."""
    if fmt is Format.ANTHROPIC:
        return 0
    n = 0
    for m in messages:
        if m.get("role") in ("system", "developer") and m.get("type", "message") == "message" \
                and not is_summary(m, fmt):
            n += 1
        else:
            break
    return n



def messages_view(items: Sequence[Message]) -> list[dict[str, Any]]:
    """Responses items read as Anthropic Messages API messages, one message per item
    (same length, same order), for the code that reads a span's text (summarizers, the
    checkpoint, must-keep extraction), which then treats calls and outputs as it treats
    ``tool_use``/``tool_result`` blocks: a message keeps its role and gets its text as a
    ``text`` block; a call becomes an assistant ``tool_use`` block (``input``: the parsed
    ``arguments`` object, else the raw string); a call's output a user ``tool_result``
    block; a reasoning item an assistant ``thinking`` block with its summary (left out of
    prose, as Anthropic thinking is); any other item an empty assistant message. Never
    sent: the compactor returns the caller's own items."""
    import json

    out: list[dict[str, Any]] = []
    for m in items:
        t = m.get("type")
        if t is None or t == "message":
            text = text_of(m)
            out.append({"role": str(m.get("role")),
                        "content": [{"type": "text", "text": text}] if text else []})
        elif t in RESPONSES_CALLS:
            raw = m.get("arguments", m.get("input", ""))
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                args = raw
            out.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": str(m.get("call_id")), "name": str(m.get("name")),
                 "input": args if isinstance(args, dict) else {"input": args}}]})
        elif t in RESPONSES_OUTPUTS:
            out.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": str(m.get("call_id")),
                 "content": output_text(m)}]})
        elif t == "reasoning":
            out.append({"role": "assistant",
                        "content": [{"type": "thinking", "thinking": _item_text(m)}]})
        else:
            out.append({"role": "assistant", "content": []})
    return out


def with_stream_usage(call: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """A streamed chat call (SDK keyword arguments or a request body) asking for its usage:
    ``stream_options.include_usage`` set to True when the caller did not set it (their other
    stream options kept), and whether it was added. Without it OpenAI streams no usage at
    all (API reference, ``stream_options``). A ``stream_options`` that is not an object is
    left for the provider to reject."""
    so = call.get("stream_options")
    if so is None:
        return {**call, "stream_options": {"include_usage": True}}, True
    if not isinstance(so, Mapping) or "include_usage" in so:
        return dict(call), False
    return {**call, "stream_options": {**so, "include_usage": True}}, True

