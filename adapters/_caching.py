"""Prompt-caching helpers for Anthropic requests: count ``cache_control`` breakpoints and
put one on the summary message, so the compacted prefix (tools, system, summary) stays
cached between compactions."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from compactor._format import Format, is_summary

#: Most ``cache_control`` breakpoints one Messages request may carry (API limit).
MAX_CACHE_BREAKPOINTS = 4

EPHEMERAL: Mapping[str, str] = {"type": "ephemeral"}


def _marked_blocks(blocks: Any) -> int:
    """``cache_control`` markers on ``blocks`` and on the blocks nested in their
    ``content`` (a ``tool_result``'s text/image blocks count against the limit too)."""
    n = 0
    if isinstance(blocks, list):
        for b in blocks:
            if isinstance(b, Mapping):
                n += (1 if b.get("cache_control") else 0) + _marked_blocks(b.get("content"))
    return n


def cache_breakpoints(body: Mapping[str, Any]) -> int:
    """How many ``cache_control`` markers a Messages request carries (tools, system
    blocks, message content blocks and the blocks nested in a ``tool_result``, and a
    top-level ``cache_control``)."""
    n = 1 if body.get("cache_control") else 0
    for t in body.get("tools") or []:
        if isinstance(t, Mapping) and t.get("cache_control"):
            n += 1
    system = body.get("system")
    if isinstance(system, list):
        n += sum(1 for b in system if isinstance(b, Mapping) and b.get("cache_control"))
    for m in body.get("messages") or []:
        n += _marked_blocks(m.get("content") if isinstance(m, Mapping) else None)
    return n


def mark_summary(messages: Sequence[Mapping[str, Any]],
                 body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``messages`` with a ``cache_control`` breakpoint on the last block of the summary
    message (a copy of that one message; the others are the same objects). Unchanged when
    there is no summary, it already has a breakpoint, or ``body`` (the rest of the request)
    already uses all :data:`MAX_CACHE_BREAKPOINTS`."""
    out = list(messages)
    for i, m in enumerate(out):
        if not is_summary(m, Format.ANTHROPIC):
            continue
        content = m.get("content")
        blocks = ([{"type": "text", "text": content}] if isinstance(content, str)
                  else [dict(b) for b in content or []])
        if not blocks or any(b.get("cache_control") for b in blocks):
            return out
        if cache_breakpoints({**body, "messages": out}) >= MAX_CACHE_BREAKPOINTS:
            return out
        blocks[-1]["cache_control"] = dict(EPHEMERAL)
        out[i] = {**m, "content": blocks}
        return out
    return out
