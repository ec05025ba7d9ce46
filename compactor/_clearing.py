"""Tool-result clearing: the cheapest compaction, tried before summarizing.

Old tool results (those of every tool use but the last ``keep_last``) are replaced by a
short placeholder naming the archived message (its ordinal) and the identifiers the
result held; the ``tool_result`` block (Anthropic), ``tool`` message (OpenAI) or
``function_call_output`` item (Responses, its ``output`` replaced) stays, so
every call keeps its answer and the history stays valid. Anthropic's ``clear_tool_uses``
context edit, LangChain's ``ClearToolUsesEdit`` and OpenAI's ``ToolOutputTrimmer`` do the
same. Pure: :func:`plan_clearings` decides from messages and counts, :func:`clear`
rewrites copies.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._facts import extract_facts
from ._format import Format, blocks, output_text, tool_result_text
from ._tokens import TokenCounter

#: Every placeholder starts with this (a result already cleared is not cleared again).
CLEARED_PREFIX = "[tool result cleared by the context compactor"
#: At most this many identifiers are listed in a placeholder.
MAX_IDENTIFIERS = 12


@dataclass(frozen=True)
class Clearing:
    """Clear the result of one tool call.

    Attributes:
        index: the message holding the result.
        block: its ``tool_result`` block index (Anthropic), or -1 (an OpenAI ``tool``
            message: its whole content; a Responses output item: its whole ``output``).
        tool: the tool's name.
        call_id: the tool_use / tool_call id it answers.
        tokens_saved: estimated tokens removed (result text minus placeholder).
        identifiers: identifier-like items of the result kept in the placeholder.
    """

    index: int
    block: int
    tool: str
    call_id: str
    tokens_saved: int
    identifiers: tuple[str, ...] = ()


def placeholder(c: Clearing, ordinal: int | None) -> str:
    """The text that replaces a cleared result: the archive reference (``#ordinal`` of the
    message, when archived) and the result's identifiers."""
    ref = f"archived as message #{ordinal}" if ordinal is not None else "the original is archived"
    ids = f"; identifiers: {'; '.join(c.identifiers)}" if c.identifiers else ""
    return f"{CLEARED_PREFIX} ({c.tool}; {ref}){ids}]"


def _results(messages: Sequence[Mapping[str, Any]], fmt: Format
             ) -> tuple[list[str], dict[str, str], list[tuple[int, int, str, str]]]:
    """Call ids in order, id -> tool name, and every result as (message, block, id, text)."""
    order: list[str] = []
    names: dict[str, str] = {}
    found: list[tuple[int, int, str, str]] = []
    if fmt is Format.RESPONSES:
        for i, m in enumerate(messages):
            t = m.get("type")
            if t in ("function_call", "custom_tool_call"):
                order.append(str(m.get("call_id")))
                names[str(m.get("call_id"))] = str(m.get("name"))
            elif t in ("function_call_output", "custom_tool_call_output"):
                found.append((i, -1, str(m.get("call_id")), output_text(m)))
        return order, names, found
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "assistant":
            for b in blocks(m):
                if b.get("type") == "tool_use":
                    order.append(str(b.get("id")))
                    names[str(b.get("id"))] = str(b.get("name"))
            for call in m.get("tool_calls") or []:
                if isinstance(call, Mapping):
                    order.append(str(call.get("id")))
                    names[str(call.get("id"))] = str((call.get("function") or {}).get("name"))
        elif fmt is Format.OPENAI and role == "tool":
            c = m.get("content")
            text = c if isinstance(c, str) else "\n".join(
                str(b.get("text", "")) for b in blocks(m) if b.get("type") == "text")
            found.append((i, -1, str(m.get("tool_call_id")), text))
        elif fmt is Format.ANTHROPIC and role == "user" and isinstance(m.get("content"), list):
            for k, b in enumerate(m["content"]):
                if isinstance(b, Mapping) and b.get("type") == "tool_result":
                    found.append((i, k, str(b.get("tool_use_id")), tool_result_text(b)))
    return order, names, found


def plan_clearings(messages: Sequence[Mapping[str, Any]], fmt: Format, *, keep_last: int,
                   exclude_tools: Sequence[str] = (), min_tokens: int = 0,
                   counter: TokenCounter | None = None,
                   skip: Sequence[int] = (), expired: Sequence[int] = ()) -> list[Clearing]:
    """The results that may be cleared, oldest first.

    Args:
        messages: the history.
        fmt: its format.
        keep_last: the results of the last this many tool uses are never cleared.
        exclude_tools: tool names whose results are never cleared.
        min_tokens: results shorter than this (tokens) are not worth clearing.
        counter: measures the results; None estimates 4 characters a token.
        skip: message indices that may not change (pinned messages).
        expired: message indices whose time to live has passed: their results are
            cleared even among the last ``keep_last`` tool uses.

    Returns:
        One :class:`Clearing` per result to clear (results already cleared, with an
        image, or that would not shrink are left out). Linear in the history's size.
    """
    order, names, found = _results(messages, fmt)
    protected = set(order[-keep_last:]) if keep_last > 0 else set()
    excluded = set(exclude_tools)
    skipped = set(skip)
    gone = set(expired)
    out: list[Clearing] = []
    for i, k, cid, text in found:
        if (cid in protected and i not in gone) or i in skipped or names.get(cid, "tool") in excluded:
            continue
        if text.startswith(CLEARED_PREFIX):
            continue
        if fmt is Format.RESPONSES and not isinstance(messages[i].get("output"), str) and any(
                isinstance(x, Mapping) and x.get("type") not in ("input_text", "output_text")
                for x in messages[i].get("output") or []):
            continue  # images and files are not cleared
        if k >= 0:
            content = messages[i]["content"][k].get("content")
            if isinstance(content, list) and any(isinstance(x, Mapping) and x.get("type") != "text"
                                                 for x in content):
                continue  # images and documents are not cleared
        tokens = counter.count(text) if counter is not None else (len(text) + 3) // 4
        if tokens < max(min_tokens, 1):
            continue
        ids = tuple(extract_facts(text, prose=False)[:MAX_IDENTIFIERS])
        c = Clearing(i, k, names.get(cid, "tool"), cid, 0, ids)
        ph = placeholder(c, 10**6)
        cost = counter.count(ph) if counter is not None else (len(ph) + 3) // 4
        if tokens - cost <= 0:
            continue
        out.append(Clearing(i, k, c.tool, cid, tokens - cost, ids))
    return out


def clear(message: Mapping[str, Any], clearings: Sequence[Clearing],
          ordinal: int | None) -> dict[str, Any]:
    """A copy of ``message`` with the given results replaced by their placeholders (the
    ``tool_result`` block and its ``tool_use_id``/``is_error`` stay; a Responses output
    item keeps its ``call_id`` and gets the placeholder as its ``output``)."""
    m = copy.deepcopy(dict(message))
    for c in clearings:
        text = placeholder(c, ordinal)
        if c.block < 0 and "output" in m and m.get("type", "message") != "message":
            m["output"] = text
        elif c.block < 0:
            m["content"] = text
        else:
            m["content"][c.block] = {**m["content"][c.block], "content": text}
    return m
