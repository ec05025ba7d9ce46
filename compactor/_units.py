"""Atomic units: the smallest pieces of a history the planner may keep or evict.

A unit is a run of consecutive assistant messages (one turn; its thinking blocks stay
with it) plus, when its last message opens tool calls, the message(s) carrying all
their results -- so a ``tool_use`` and its ``tool_result``, and every call of a
parallel batch, always move together. Any other message is a unit of its own.
Because the planner moves units, a cut inside a pair cannot be expressed.

Responses API items (``Format.RESPONSES``): a turn is a run of consecutive model items
(``reasoning``, assistant ``message``, ``function_call`` and the built-in tools' calls)
plus the output items that follow it; it reaches on until every call it opened is
answered, so a parallel batch and its outputs, and each reasoning item with the item it
belongs to, move together (a reasoning item's ``encrypted_content`` is never touched).
An ``item_reference`` (a stored item by id, which may be a call) moves with the outputs
after it in its tool round that answer no call of the round (the validator accepts them
because of the reference), and with everything between: the unit holding the reference
reaches on to the last such output, so neither can be kept without the other.
``compaction`` items, unknown item types and a reference no output relies on are units
of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._format import (Format, blocks, calls_answered, calls_opened, is_pinned, is_summary,
                      item_type, leading_system_count, role_of)

PinPredicate = Callable[[int, Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Unit:
    """Messages ``[start, end)`` of a history, moved as one.

    ``kind``: ``"system"`` (OpenAI leading system/developer messages), ``"summary"`` (a
    summary this package inserted), ``"turn"`` (assistant turn, with its tool results if it
    made calls) or ``"message"`` (any other single message). ``pinned``: a message in it is
    pinned. ``thinking``: its first message is an assistant message that starts with a
    ``thinking``/``redacted_thinking`` block (Responses: its first item is a ``reasoning``
    item). ``calls``: it contains tool calls.
    """

    start: int
    end: int
    kind: str
    pinned: bool = False
    thinking: bool = False
    calls: bool = False

    @property
    def size(self) -> int:
        """Number of messages in the unit."""
        return self.end - self.start


def _starts_with_thinking(m: Mapping[str, Any]) -> bool:
    bl = blocks(m) if isinstance(m.get("content"), list) else []
    return bool(bl) and bl[0].get("type") in ("thinking", "redacted_thinking")


def group_units(messages: Sequence[Mapping[str, Any]], fmt: Format,
                pin: PinPredicate | None = None) -> list[Unit]:
    """Split a (valid) history into units, in order, covering every message exactly once.

    Args:
        messages: the history (Anthropic: without the system prompt).
        fmt: its wire format.
        pin: optional predicate ``(index, message) -> bool``; a unit holding a message for
            which it is true, or which carries the ``PIN_KEY`` flag, is pinned.
    """
    n = len(messages)
    units: list[Unit] = []

    def pinned(a: int, b: int) -> bool:
        return any(is_pinned(messages[k]) or (pin is not None and pin(k, messages[k]))
                   for k in range(a, b))

    i = leading_system_count(messages, fmt)
    if i:
        units.append(Unit(0, i, "system", pinned=True))
    if i < n and is_summary(messages[i], fmt):
        units.append(Unit(i, i + 1, "summary"))
        i += 1
    if fmt is Format.RESPONSES:
        units.extend(_responses_units(messages, i, pinned))
        return units
    while i < n:
        m = messages[i]
        if m.get("role") == "assistant":
            j = i
            while (j + 1 < n and messages[j + 1].get("role") == "assistant"
                   and not calls_opened(messages[j], fmt)):
                j += 1
            end = j + 1
            has_calls = bool(calls_opened(messages[j], fmt))
            if has_calls:
                if fmt is Format.ANTHROPIC:
                    if end < n and messages[end].get("role") == "user":
                        end += 1
                else:
                    while end < n and messages[end].get("role") == "tool":
                        end += 1
            units.append(Unit(i, end, "turn", pinned=pinned(i, end),
                              thinking=_starts_with_thinking(m), calls=has_calls))
            i = end
        else:
            units.append(Unit(i, i + 1, "message", pinned=pinned(i, i + 1)))
            i += 1
    return units


def _responses_units(items: Sequence[Mapping[str, Any]], i: int,
                     pinned: Callable[[int, int], bool]) -> list[Unit]:
    """Units of Responses items ``items[i:]`` (see the module docstring)."""
    n = len(items)
    out: list[Unit] = []
    reach = _reference_reach(items, i)
    while i < n:
        end, has_calls = _responses_unit_end(items, i)
        last = max((reach.get(k, -1) for k in range(i, end)), default=-1) if reach else -1
        while end <= last:               # a reference moves with the outputs it may answer
            end, _ = _responses_unit_end(items, end)
            has_calls = True
        if end == i + 1 and role_of(items[i], Format.RESPONSES) != "assistant":
            out.append(Unit(i, i + 1, "message", pinned=pinned(i, i + 1)))
        else:
            out.append(Unit(i, end, "turn", pinned=pinned(i, end),
                            thinking=items[i].get("type") == "reasoning", calls=has_calls))
        i = end
    return out


def _responses_unit_end(items: Sequence[Mapping[str, Any]], i: int) -> tuple[int, bool]:
    """End of the Responses unit that starts at ``items[i]``, ignoring item references,
    and whether it opens calls: a model turn with every output of its calls, or one item."""
    n = len(items)
    if role_of(items[i], Format.RESPONSES) != "assistant":
        return i + 1, False
    open_ids: set[str] = set()
    end = i
    while end < n and role_of(items[end], Format.RESPONSES) == "assistant":
        open_ids.update(calls_opened(items[end], Format.RESPONSES))
        end += 1
    has_calls = bool(open_ids)
    while end < n and role_of(items[end], Format.RESPONSES) == "tool":
        open_ids.difference_update(calls_answered(items[end], Format.RESPONSES))
        end += 1
    while open_ids and end < n:      # an output further on: the unit reaches it
        open_ids.difference_update(calls_answered(items[end], Format.RESPONSES))
        end += 1
    return end, has_calls


def _reference_reach(items: Sequence[Mapping[str, Any]], i: int) -> dict[int, int]:
    """For each ``item_reference`` in ``items[i:]``: the index of the last output after it
    in its tool round (a round ends at a ``message`` item) that answers a call no earlier
    item of the round opened -- an output the reference may stand for the call of (the
    validator accepts it). References with no such output after them are left out."""
    reach: dict[int, int] = {}
    if not any(item_type(items[k]) == "item_reference" for k in range(i, len(items))):
        return reach
    refs: list[int] = []
    opened: set[str] = set()
    last = -1

    def close() -> None:
        for r in refs:
            if last > r:
                reach[r] = last

    for k in range(i, len(items)):
        m = items[k]
        if item_type(m) == "message":
            close()
            refs, opened, last = [], set(), -1
            continue
        if item_type(m) == "item_reference":
            refs.append(k)
        opened.update(calls_opened(m, Format.RESPONSES))
        if refs and any(c not in opened for c in calls_answered(m, Format.RESPONSES)):
            last = k
    close()
    return reach


def current_turn_start(messages: Sequence[Mapping[str, Any]], units: Sequence[Unit],
                       fmt: Format) -> int | None:
    """Index into ``units`` of the unit that opened the tool-use loop in progress, if
    that unit starts with a thinking block and is not the last unit; else None.

    With extended thinking, the assistant turn in progress must be sent back with its
    thinking block first (Anthropic extended-thinking docs, "thinking with tool use"), so
    that unit belongs to the floor as well as the last unit.
    """
    if fmt is not Format.ANTHROPIC or not units:
        return None
    k = len(units) - 1
    # walk back over tool-loop units (assistant turns with calls + their results)
    first = None
    while k >= 0 and units[k].kind == "turn" and units[k].calls:
        first = k
        k -= 1
    if first is None:
        # last unit may be a plain user message after a tool loop; not a loop in progress
        return None
    return first if units[first].thinking and first != len(units) - 1 else None
