"""The two wire formats, read without copying: Anthropic Messages API and OpenAI chat.

Messages stay the caller's own dicts; nothing here mutates them. These helpers answer
the questions the validator, the unit grouping and the token counter ask of a message:
its role, its content blocks, the tool call ids it opens and the ids it answers.
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
    (``system``/``developer``/``user``/``assistant``/``tool`` roles, ``tool_calls``)."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"


_OPENAI_ONLY_ROLES = {"system", "developer", "tool"}
_ANTHROPIC_BLOCKS = {"tool_use", "tool_result", "thinking", "redacted_thinking", "image", "document"}


def detect_format(messages: Sequence[Message]) -> Format:
    """Guess the wire format of ``messages``.

    OpenAI when a message has role ``system``/``developer``/``tool`` or ``tool_calls``;
    Anthropic when a content block has an Anthropic-only type; Anthropic for plain
    text-only ``user``/``assistant`` histories, which are valid in both.

    Raises:
        InvalidHistoryError: a message is not a mapping with a string ``role``.
    """
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise InvalidHistoryError(
                f"messages[{i}] is not a message: expected a dict with a string 'role'; "
                "fix: pass a list of message dicts", index=i, rule="shape")
        if m["role"] in _OPENAI_ONLY_ROLES or m.get("tool_calls"):
            return Format.OPENAI
        content = m.get("content")
        if isinstance(content, list):
            for b in content:
                if isinstance(b, Mapping) and b.get("type") in _ANTHROPIC_BLOCKS:
                    return Format.ANTHROPIC
    return Format.ANTHROPIC


def blocks(message: Message) -> list[Mapping[str, Any]]:
    """The content blocks of a message; a string content is one ``text`` block."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, Mapping)]
    return []


def calls_opened(message: Message, fmt: Format) -> list[str]:
    """Ids of the tool calls an assistant message opens (``tool_use`` / ``tool_calls``)."""
    if message.get("role") != "assistant":
        return []
    if fmt is Format.ANTHROPIC:
        return [str(b.get("id")) for b in blocks(message) if b.get("type") == "tool_use"]
    return [str(c.get("id")) for c in (message.get("tool_calls") or []) if isinstance(c, Mapping)]


def calls_answered(message: Message, fmt: Format) -> list[str]:
    """Ids a message answers: ``tool_result`` blocks (Anthropic) or a ``tool`` message."""
    if fmt is Format.ANTHROPIC:
        return [str(b.get("tool_use_id")) for b in blocks(message) if b.get("type") == "tool_result"]
    if message.get("role") == "tool":
        return [str(message.get("tool_call_id"))]
    return []


def text_of(message: Message) -> str:
    """All human-readable text of a message, blocks joined by newlines: text, thinking,
    tool inputs (as JSON), tool results and OpenAI ``function.arguments``. Used for
    summaries, must-keep extraction and probe containment, not for token counting."""
    import json

    parts: list[str] = []
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
    for c in message.get("tool_calls") or []:
        fn = c.get("function") or {}
        parts.append(f"{fn.get('name')}({fn.get('arguments', '')})")
    return "\n".join(p for p in parts if p)


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
    """True for a summary message this package inserted (by its tag)."""
    role = message.get("role")
    if (fmt is Format.ANTHROPIC and role != "user") or (fmt is Format.OPENAI and role != "system"):
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
    """How many messages at the start are the system prompt (OpenAI ``system``/``developer``),
    not counting a summary this package inserted; always 0 for Anthropic."""
    if fmt is Format.ANTHROPIC:
        return 0
    n = 0
    for m in messages:
        if m.get("role") in ("system", "developer") and not is_summary(m, fmt):
            n += 1
        else:
            break
    return n
