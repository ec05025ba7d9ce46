"""An independent checker of the providers' message rules, for tests.

Written from the providers' documented rules (``docs/provider-rules.md`` and the
Anthropic Messages API / OpenAI chat completions references it cites), separately from
:func:`compactor.validate`: it imports nothing from the compactor's core (no ``_validate``,
``_units`` or ``_format``), so a bug there cannot hide itself. The loopback server and
the property tests judge what the compactor sends with this module; ``compactor.validate``
is the code under test.

Rule codes are those of ``compactor.validate`` where the rule is the same (so the two can
be compared), plus ``thinking_first`` and ``thinking_block``:

Anthropic Messages API
    ``empty_messages`` (not a list, or empty), ``shape`` (a message that is not an object
    with a string role, a content block that is not an object with a string type),
    ``role`` (only user/assistant), ``empty_content`` ("" or []), ``misplaced_block``
    (tool_use in a user message, tool_result in an assistant one), ``duplicate_tool_id``
    (a tool_use id twice in the request), ``unanswered_call`` (a tool_use not answered
    by a tool_result in the immediately following user message), ``orphan_result`` (a
    tool_result whose id the immediately preceding assistant message did not open),
    ``duplicate_result`` (one tool_use answered twice), ``result_order`` (a tool_result
    after another kind of block), ``thinking_block`` (a thinking block without its
    signature, a redacted_thinking block without its data) and, with extended thinking
    on, ``thinking_first`` (the assistant turn of the tool-use loop in progress does not
    start with a thinking block). Consecutive same-role messages are accepted (the API
    combines them), so there is no alternation rule.
OpenAI chat completions
    ``empty_messages``, ``shape``, ``role`` (system/developer/user/assistant/tool),
    ``empty_content`` (empty user/system/developer content; an assistant message with
    neither content nor tool_calls), ``arguments_type`` (``function.arguments`` not a
    string), ``unanswered_call`` (a tool_calls id not answered by the tool messages that
    follow it, before the next non-tool message), ``orphan_result`` (a tool message that
    does not answer an id of the assistant message its run of tool messages follows),
    ``duplicate_result`` (one id answered twice).
OpenAI Responses API (``input`` items)
    ``empty_messages`` (an empty list, or neither a string nor a list), ``shape`` (an
    item that is not an object, or has neither a string ``type`` nor a ``role``; a
    content part that is not an object with a string type), ``role`` (a message role
    other than user/assistant/system/developer), ``empty_content`` (a message with no
    content, ``""`` or ``[]``), ``arguments_type`` (``function_call.arguments`` not a
    string), ``duplicate_tool_id`` (two ``function_call`` items with one ``call_id``),
    ``unanswered_call`` (a ``function_call`` with no ``function_call_output`` of its
    ``call_id`` after it and before the next message item), ``orphan_result`` (a
    ``function_call_output`` with no call of its ``call_id`` open since the last message
    item; an unseen ``call_id`` is accepted when the request continues a stored
    conversation: ``previous_response_id`` / ``conversation``, or when an
    ``item_reference`` came before it since the last message item: the API reference's
    "Item reference" is "An internal identifier for an item to reference", a stored item
    the API includes, which may be the call), ``duplicate_result``
    (one call answered twice) and ``orphan_reasoning`` (a
    ``reasoning`` item not followed by the output item it preceded: a ``function_call``,
    an assistant message or another model output item).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Broken", "anthropic_problems", "openai_problems", "responses_problems",
           "MESSAGE_RULES"]

#: Every rule code this module reports (the request-level rules are checked elsewhere).
MESSAGE_RULES = frozenset({
    "empty_messages", "shape", "role", "empty_content", "misplaced_block",
    "duplicate_tool_id", "unanswered_call", "orphan_result", "duplicate_result",
    "result_order", "arguments_type", "thinking_first", "thinking_block", "orphan_reasoning"})

_THINKING = ("thinking", "redacted_thinking")


@dataclass(frozen=True)
class Broken:
    """One broken rule: ``rule`` (a code above), ``index`` (message index; None: the whole
    list), ``detail`` (what is wrong, in the provider's words where it has some)."""

    rule: str
    index: int | None
    detail: str


def _content_blocks(m: Mapping[str, Any]) -> list[Any]:
    c = m.get("content")
    return list(c) if isinstance(c, list) else []


def _ids(blocks: list[Any], kind: str, key: str) -> list[str]:
    return [str(b.get(key)) for b in blocks if isinstance(b, Mapping) and b.get("type") == kind]


def anthropic_problems(messages: Any, *, thinking: bool = False,
                       open_calls_at_end: bool = False) -> list[Broken]:
    """The Anthropic Messages API rules ``messages`` breaks (empty when it keeps them).

    Args:
        messages: the request's ``messages`` (the system prompt is not one of them).
        thinking: extended thinking is on (the request has ``thinking.type == "enabled"``).
        open_calls_at_end: accept tool_use blocks in the last message with no result yet.
    """
    if not isinstance(messages, list) or not messages:
        return [Broken("empty_messages", None, "messages: at least one message is required")]
    out: list[Broken] = []
    seen_tool_ids: set[str] = set()
    ok: list[bool] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            out.append(Broken("shape", i, "a message is an object with a string role"))
            ok.append(False)
            continue
        if m["role"] not in ("user", "assistant"):
            out.append(Broken("role", i, f"unexpected role {m['role']!r}: only user and "
                              "assistant (system is a top-level parameter)"))
            ok.append(False)
            continue
        c = m.get("content")
        if c is None or c == "" or c == []:
            out.append(Broken("empty_content", i, "content must not be empty"))
        elif not isinstance(c, (str, list)):
            out.append(Broken("shape", i, "content is a string or a list of blocks"))
        bl = _content_blocks(m)
        for b in bl:
            if not isinstance(b, Mapping) or not isinstance(b.get("type"), str):
                out.append(Broken("shape", i, "a content block is an object with a string type"))
            elif b["type"] == "thinking" and not isinstance(b.get("signature"), str):
                out.append(Broken("thinking_block", i, "thinking block without its signature"))
            elif b["type"] == "redacted_thinking" and not isinstance(b.get("data"), str):
                out.append(Broken("thinking_block", i, "redacted_thinking block without data"))
        uses, results = _ids(bl, "tool_use", "id"), _ids(bl, "tool_result", "tool_use_id")
        if m["role"] == "user" and uses:
            out.append(Broken("misplaced_block", i, "tool_use blocks belong in assistant messages"))
        if m["role"] == "assistant" and results:
            out.append(Broken("misplaced_block", i, "tool_result blocks belong in user messages"))
        for t in uses:
            if t in seen_tool_ids:
                out.append(Broken("duplicate_tool_id", i, f"tool_use ids must be unique: {t}"))
            seen_tool_ids.add(t)
        ok.append(True)
    for i, m in enumerate(messages):
        if not ok[i]:
            continue
        bl = _content_blocks(m)
        if m["role"] == "assistant":
            uses = _ids(bl, "tool_use", "id")
            if not uses or (i == len(messages) - 1 and open_calls_at_end):
                continue
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            answered: set[str] = set()
            if nxt is not None and ok[i + 1] and nxt.get("role") == "user":
                answered = set(_ids(_content_blocks(nxt), "tool_result", "tool_use_id"))
            for t in uses:
                if t not in answered:
                    out.append(Broken("unanswered_call", i, f"tool_use ids were found without "
                                      f"tool_result blocks immediately after: {t}"))
            continue
        results = _ids(bl, "tool_result", "tool_use_id")
        if not results:
            continue
        kinds = [b.get("type") if isinstance(b, Mapping) else None for b in bl]
        if kinds[:len(results)] != ["tool_result"] * len(results):
            out.append(Broken("result_order", i, "tool_result blocks must come first in content"))
        prev = messages[i - 1] if i > 0 else None
        opened = set(_ids(_content_blocks(prev), "tool_use", "id")) \
            if i > 0 and ok[i - 1] and prev.get("role") == "assistant" else set()
        for k, t in enumerate(results):
            if t not in opened:
                out.append(Broken("orphan_result", i, "unexpected tool_use_id found in "
                                  f"tool_result blocks: {t} (no tool_use in the previous message)"))
            elif t in results[:k]:
                out.append(Broken("duplicate_result", i, f"tool_use {t} answered twice"))
    if thinking and all(ok):
        out.extend(_thinking_loop(messages))
    return sorted(out, key=lambda b: -1 if b.index is None else b.index)


def _thinking_loop(messages: list[Any]) -> list[Broken]:
    """With extended thinking on, the assistant turn of a tool-use loop in progress must
    start with a thinking block: when the last message carries tool results, walk back
    over the loop (assistant messages and tool-result messages) to the user message that
    started it; the first assistant message after it must open with thinking."""
    def has_results(m: Mapping[str, Any]) -> bool:
        return bool(_ids(_content_blocks(m), "tool_result", "tool_use_id"))

    last = messages[-1]
    if last.get("role") != "user" or not has_results(last):
        return []
    k = len(messages) - 1
    while k >= 0 and (messages[k].get("role") == "assistant" or has_results(messages[k])):
        k -= 1
    first = next((j for j in range(k + 1, len(messages))
                  if messages[j].get("role") == "assistant"), None)
    if first is None:
        return []
    bl = _content_blocks(messages[first])
    if bl and isinstance(bl[0], Mapping) and bl[0].get("type") in _THINKING:
        return []
    return [Broken("thinking_first", first, "Expected `thinking` or `redacted_thinking`, but "
                   "found another block: the assistant turn of the tool-use loop in progress "
                   "must start with its thinking block")]


def openai_problems(messages: Any, *, open_calls_at_end: bool = False) -> list[Broken]:
    """The OpenAI chat completions rules ``messages`` breaks (empty when it keeps them).

    Args:
        messages: the request's ``messages``.
        open_calls_at_end: accept tool_calls in the last message with no tool messages yet.
    """
    if not isinstance(messages, list) or not messages:
        return [Broken("empty_messages", None, "messages: at least one message is required")]
    out: list[Broken] = []
    opener: int | None = None     # the assistant message the current run of tool messages answers
    waiting: list[str] = []       # its ids not answered yet
    done: set[str] = set()

    def close_run() -> None:
        if opener is not None and waiting and not (open_calls_at_end and
                                                  opener == len(messages) - 1):
            for t in waiting:
                out.append(Broken("unanswered_call", opener, "An assistant message with "
                                  "'tool_calls' must be followed by tool messages responding "
                                  f"to each 'tool_call_id': {t}"))

    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            out.append(Broken("shape", i, "a message is an object with a string role"))
            continue
        role, c = m["role"], m.get("content")
        if role == "tool":
            t = str(m.get("tool_call_id"))
            if opener is None or (t not in waiting and t not in done):
                out.append(Broken("orphan_result", i, "messages with role 'tool' must be a "
                                  "response to a preceding message with 'tool_calls'"))
            elif t in done:
                out.append(Broken("duplicate_result", i, f"tool_call_id {t} answered twice"))
            else:
                waiting.remove(t)
                done.add(t)
            continue
        close_run()
        opener, waiting, done = None, [], set()
        if role not in ("system", "developer", "user", "assistant"):
            out.append(Broken("role", i, f"unexpected role {role!r}"))
            continue
        calls = (m.get("tool_calls") or []) if role == "assistant" else []
        if role != "assistant" and (c is None or c == "" or c == []):
            out.append(Broken("empty_content", i, f"a {role} message needs content"))
        if role == "assistant" and not calls and (c is None or c == "" or c == []):
            out.append(Broken("empty_content", i, "an assistant message needs content or "
                              "tool_calls"))
        for call in calls if isinstance(calls, list) else []:
            fn = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("arguments"), str):
                out.append(Broken("arguments_type", i, "function.arguments must be a JSON string"))
        ids = [str(call.get("id")) for call in calls if isinstance(call, Mapping)] \
            if isinstance(calls, list) else []
        if ids:
            opener, waiting = i, ids
    close_run()
    return sorted(out, key=lambda b: -1 if b.index is None else b.index)


#: Message roles the Responses API accepts in an input message (any other is a 400:
#: "Invalid value: 'tool'. Supported values are: 'assistant', 'system', 'developer', and 'user'.").
RESPONSES_ROLES = ("user", "assistant", "system", "developer")

def _item_kind(item: Any) -> str | None:
    """An input item's type (``message`` for a ``{"role": ..., "content": ...}`` item
    without one), or None when it has neither a string type nor a string role."""
    if not isinstance(item, Mapping):
        return None
    t = item.get("type")
    if isinstance(t, str):
        return t
    return "message" if isinstance(item.get("role"), str) else None


def _is_model_output(item: Mapping[str, Any], kind: str) -> bool:
    """Whether ``item`` is something the model produced (what a reasoning item precedes):
    an assistant message or any item that is neither a message of another role, a
    ``function_call_output``, another ``reasoning`` item, an ``item_reference`` nor a
    ``compaction`` item (the output of the compaction endpoint, not of a model turn)."""
    if kind == "message":
        return item.get("role") == "assistant"
    return kind not in ("function_call_output", "reasoning", "item_reference", "compaction")


def responses_problems(items: Any, *, open_calls_at_end: bool = False,
                       stateful: bool = False) -> list[Broken]:
    """The OpenAI Responses API rules a request's ``input`` breaks (empty when it keeps them).

    A call's ``function_call_output`` must come after the call and before the next
    message item (other calls, outputs and reasoning items may come between: parallel
    calls arrive as call, call, output, output).

    Args:
        items: the request's ``input``: a string (always valid) or a list of items.
        open_calls_at_end: accept ``function_call`` items without outputs when only model
            output (assistant messages, calls, reasoning) follows them to the end.
        stateful: the request continues a stored conversation (``previous_response_id`` or
            ``conversation``): an output may answer a call that is not in ``items``.
    """
    if isinstance(items, str):
        return []
    if not isinstance(items, list) or not items:
        return [Broken("empty_messages", None, "input: a string or a non-empty list of "
                       "items is required")]
    out: list[Broken] = []
    kinds = [_item_kind(x) for x in items]
    seen_calls: set[str] = set()      # every call_id opened so far
    pending: dict[str, int] = {}      # calls opened since the last message item, unanswered
    answered: set[str] = set()        # calls answered since the last message item
    answered_all: set[str] = set()
    referenced = False                # an item_reference since the last message item

    def close_run(at_end: bool) -> None:
        for cid, i in pending.items():
            if at_end and open_calls_at_end and all(
                    kinds[j] is not None and (kinds[j] == "reasoning" or _is_model_output(
                        items[j], kinds[j]))  # type: ignore[arg-type]
                    for j in range(i + 1, len(items))):
                continue
            out.append(Broken("unanswered_call", i, f"No tool output found for function call "
                              f"{cid}."))

    for i, (item, kind) in enumerate(zip(items, kinds)):
        if kind is None:
            out.append(Broken("shape", i, "an input item is an object with a string type "
                              "(or a message with a string role)"))
            continue
        if kind == "message":
            close_run(False)
            pending, answered, referenced = {}, set(), False
            role = item.get("role")
            if role not in RESPONSES_ROLES:
                out.append(Broken("role", i, f"Invalid value: {role!r}. Supported values are: "
                                  "'assistant', 'system', 'developer', and 'user'."))
            c = item.get("content")
            if c is None or c == "" or c == []:
                out.append(Broken("empty_content", i, "a message needs content"))
            elif isinstance(c, list):
                if any(not isinstance(p, Mapping) or not isinstance(p.get("type"), str)
                       for p in c):
                    out.append(Broken("shape", i, "a content part is an object with a "
                                      "string type"))
            elif not isinstance(c, str):
                out.append(Broken("shape", i, "content is a string or a list of parts"))
        elif kind == "function_call":
            cid = str(item.get("call_id"))
            if not isinstance(item.get("arguments"), str):
                out.append(Broken("arguments_type", i, f"Invalid type for 'input[{i}]."
                                  "arguments': expected a string (JSON-encoded arguments)"))
            if cid in seen_calls:
                out.append(Broken("duplicate_tool_id", i, f"Duplicate 'call_id': {cid}"))
            seen_calls.add(cid)
            pending[cid] = i
        elif kind == "function_call_output":
            cid = str(item.get("call_id"))
            if cid in pending:
                del pending[cid]
                answered.add(cid)
            elif cid in answered or (stateful and cid in answered_all):
                out.append(Broken("duplicate_result", i, "Duplicate function_call_output for "
                                  f"call_id {cid!r}"))
            elif referenced and cid not in seen_calls:
                answered.add(cid)     # the round's item_reference may name its stored call
            elif not (stateful and cid not in seen_calls):
                out.append(Broken("orphan_result", i, "No tool call found for function call "
                                  f"output with call_id {cid}."))
            answered_all.add(cid)
        elif kind == "item_reference":
            referenced = True
        elif kind == "reasoning":
            nxt = i + 1
            ok = nxt < len(items) and kinds[nxt] is not None \
                and _is_model_output(items[nxt], kinds[nxt])  # type: ignore[arg-type]
            if not ok:
                rid = item.get("id") or "(no id)"
                out.append(Broken("orphan_reasoning", i, f"Item {rid!r} of type 'reasoning' "
                                  "was provided without its required following item."))
    close_run(True)
    return sorted(out, key=lambda b: -1 if b.index is None else b.index)
