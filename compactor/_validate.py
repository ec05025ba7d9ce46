"""The provider rules a history must keep, checked once, centrally.

Every rule here is one the providers enforce with HTTP 400 (see ``docs/provider-rules.md``
and the Anthropic Messages API / OpenAI chat completions references). The validator, the
unit grouping and the loopback test server all use this module, so they agree.

Rule codes (``Violation.rule``):

* ``empty_messages`` -- the list is empty.
* ``shape`` -- a message is not a dict with a string role.
* ``role`` -- a role the format does not allow (Anthropic: only ``user``/``assistant``).
* ``empty_content`` -- empty string or empty list content (Anthropic; OpenAI user/system;
  a Responses message item).
* ``misplaced_block`` -- ``tool_use`` in a user message or ``tool_result`` in an assistant one.
* ``duplicate_tool_id`` -- a ``tool_use`` id used twice in one request (Anthropic).
* ``unanswered_call`` -- a call not answered by the immediately following message(s).
* ``orphan_result`` -- a result whose id the previous assistant message did not open.
* ``duplicate_result`` -- one call answered twice.
* ``result_order`` -- text before a ``tool_result`` block in a user message (Anthropic).
* ``arguments_type`` -- OpenAI ``function.arguments`` (Responses: a ``function_call``'s
  ``arguments``) that is not a JSON string.
* ``orphan_reasoning`` -- Responses: a ``reasoning`` item not immediately followed by
  the item the model produced with it.

Responses API items (``Format.RESPONSES``) follow the same pairing by ``call_id``: a
``function_call`` (``custom_tool_call``, ``computer_call``) is answered by one output item
with its ``call_id`` after it and before the next ``message`` item ("No tool output found
for function call <call_id>"); an output whose ``call_id`` no open call has is an orphan
("No tool call found for function call output with call_id <call_id>"), unless an
``item_reference`` item came earlier in the same tool round (since the last ``message``
item) and no call before the output in the request opened its ``call_id``: the reference
makes the API include a stored item by its id ("An internal identifier for an item to
reference", openai-python ``ItemReference``), which may be that call. A ``call_id``
opened twice is ``duplicate_tool_id``. A ``reasoning`` item must be followed directly by
the message or call it belongs to ("Item 'rs_...' of type 'reasoning' was provided
without its required following item"; two reasoning items in a row fail the same way, as
reported in openai/codex#1235 and inspect_ai#1990). These are the API's own 400 messages,
as quoted in public bug reports (e.g. openai/openai-node#1567, continuedev/continue#10092);
``docs/provider-rules.md`` lists them with the other formats' rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import InvalidHistoryError
from ._format import (RESPONSES_CALLS, RESPONSES_MODEL_ITEMS, Format, blocks, calls_answered,
                      calls_opened, role_of)

#: Rules that make a history unusable for compaction (pairs cannot be formed; a
#: Responses reasoning item without the item it belongs to is such a broken pair: the
#: API refuses it, and a compaction that kept it would send it on).
PAIRING_RULES = frozenset({"unanswered_call", "orphan_result", "duplicate_result",
                           "misplaced_block", "shape", "role", "orphan_reasoning"})

#: The fix for each rule code: what the caller changes in the history so the rule holds.
#: Every error and CLI line built from a :class:`Violation` ends with its rule's fix, so
#: the hint always matches the rule that failed.
FIXES: dict[str, str] = {
    "empty_messages": "send at least one user message",
    "shape": "make every message a JSON object with a string 'role'",
    "role": "use only the roles the format accepts (Anthropic: 'user' and 'assistant', e.g. "
            "'human' -> 'user', 'bot' -> 'assistant', the system prompt as the top-level "
            "'system' parameter; OpenAI: system, developer, user, assistant, tool)",
    "empty_content": "give the message non-empty content, or drop it",
    "misplaced_block": "put tool_use blocks in assistant messages and tool_result blocks in "
                       "the user message right after",
    "duplicate_tool_id": "give every tool call in the history its own id",
    "unanswered_call": "follow every tool call immediately with its result (all results of "
                       "one assistant message in the next message), or drop the call",
    "orphan_result": "drop the result, or keep the assistant message with the tool call it "
                     "answers immediately before it",
    "duplicate_result": "answer each tool call once: drop the repeated result",
    "result_order": "put the tool_result blocks first in the user message's content, text "
                    "after them",
    "arguments_type": "send function.arguments as a JSON string (json.dumps of the object)",
    "orphan_reasoning": "keep each reasoning item directly before the message or call the "
                        "model produced with it (the whole turn together), or drop it (of "
                        "two reasoning items in a row, drop the first)",
}


def fix_for(rule: str) -> str:
    """The fix hint of a rule code (see :data:`FIXES`); a generic one for unknown codes."""
    return FIXES.get(rule, "send only histories that keep the provider rules "
                           "(docs/provider-rules.md)")


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``index`` is the 0-based message index (None: the whole list)."""

    rule: str
    index: int | None
    detail: str
    tool_id: str | None = None

    def __str__(self) -> str:
        where = f"messages[{self.index}]" if self.index is not None else "messages"
        tid = f" (id {self.tool_id!r})" if self.tool_id else ""
        return f"{self.rule}: {where}{tid}: {self.detail}"

    @property
    def fix(self) -> str:
        """What to change so this rule holds (from :data:`FIXES`)."""
        return fix_for(self.rule)


def validate(messages: Sequence[Mapping[str, Any]], fmt: Format, *,
             allow_open_calls_at_end: bool = True, start: int = 0) -> list[Violation]:
    """Check ``messages`` against the provider rules of ``fmt``.

    Args:
        messages: the history, as it would be sent (Anthropic: without the system prompt).
        fmt: the wire format.
        allow_open_calls_at_end: accept calls in the last assistant message that have no
            results yet (the agent is about to run its tools).
        start: check only messages from this index on (their pairing with ``start - 1``
            included); the incremental check of a history that only grew. Duplicate
            ``tool_use`` ids are then checked within ``messages[start - 1:]`` only.

    Returns:
        The violations, in message order; empty when the history is valid.
    """
    if not messages:
        return [Violation("empty_messages", None, "the messages list is empty")]
    lo = max(0, start - 1)
    if fmt is Format.ANTHROPIC:
        return _validate_anthropic(messages, lo, allow_open_calls_at_end)
    if fmt is Format.RESPONSES:
        return _validate_responses(messages, lo, allow_open_calls_at_end)
    return _validate_openai(messages, lo, allow_open_calls_at_end)


def _validate_anthropic(msgs: Sequence[Mapping[str, Any]], lo: int,
                        allow_open: bool) -> list[Violation]:
    out: list[Violation] = []
    seen_ids: set[str] = set()
    n = len(msgs)
    for i in range(lo, n):
        m = msgs[i]
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            out.append(Violation("shape", i, "not a dict with a string 'role'"))
            continue
        role = m["role"]
        if role not in ("user", "assistant"):
            out.append(Violation("role", i, f"role {role!r} is not allowed; the Messages API "
                                 "takes only 'user' and 'assistant' (pass the system prompt as "
                                 "the top-level 'system' parameter)"))
            continue
        content = m.get("content")
        if content is None or content == "" or content == []:
            out.append(Violation("empty_content", i, "content is empty"))
            continue
        bl = blocks(m)
        types = [b.get("type") for b in bl]
        if role == "user" and "tool_use" in types:
            out.append(Violation("misplaced_block", i, "tool_use block in a user message"))
        if role == "assistant" and "tool_result" in types:
            out.append(Violation("misplaced_block", i, "tool_result block in an assistant message"))
        for tid in calls_opened(m, Format.ANTHROPIC):
            if tid in seen_ids:
                out.append(Violation("duplicate_tool_id", i, "tool_use id used twice", tid))
            seen_ids.add(tid)
        # results: first, answering the previous assistant message exactly
        answered = calls_answered(m, Format.ANTHROPIC) if role == "user" else []
        if answered:
            first_other = next((k for k, t in enumerate(types) if t != "tool_result"), len(types))
            if any(t == "tool_result" for t in types[first_other:]):
                out.append(Violation("result_order", i, "tool_result blocks must come first in "
                                     "content; text after them"))
            prev = msgs[i - 1] if i > 0 else None
            opened = set(calls_opened(prev, Format.ANTHROPIC)) if prev is not None else set()
            seen_here: set[str] = set()
            for tid in answered:
                if tid not in opened:
                    out.append(Violation("orphan_result", i, "tool_result has no matching tool_use "
                                         "in the immediately preceding assistant message", tid))
                if tid in seen_here:
                    out.append(Violation("duplicate_result", i, "tool_use answered twice", tid))
                seen_here.add(tid)
        # calls: answered in full by the next message
        opened_ids = calls_opened(m, Format.ANTHROPIC)
        if opened_ids:
            if i == n - 1:
                if not allow_open:
                    for tid in opened_ids:
                        out.append(Violation("unanswered_call", i, "tool_use at the end of the "
                                             "history has no tool_result", tid))
                continue
            nxt = msgs[i + 1]
            got = set(calls_answered(nxt, Format.ANTHROPIC)) if nxt.get("role") == "user" else set()
            for tid in opened_ids:
                if tid not in got:
                    out.append(Violation("unanswered_call", i, "tool_use ids were found without "
                                         "tool_result blocks immediately after", tid))
    return out


def _validate_openai(msgs: Sequence[Mapping[str, Any]], lo: int,
                     allow_open: bool) -> list[Violation]:
    out: list[Violation] = []
    n = len(msgs)
    pending: dict[str, int] = {}   # open call id -> index of the assistant message
    answered_batch: set[str] = set()
    # Rebuild the pending state at ``lo`` by looking back to the last assistant message.
    if lo > 0:
        k = lo - 1
        while k >= 0 and msgs[k].get("role") == "tool":
            k -= 1
        if k >= 0 and msgs[k].get("role") == "assistant":
            ids = calls_opened(msgs[k], Format.OPENAI)
            done = {str(msgs[j].get("tool_call_id")) for j in range(k + 1, lo)}
            pending = {t: k for t in ids if t not in done}
            answered_batch = set(done) if ids else set()
    in_batch = bool(pending) or bool(answered_batch)
    for i in range(lo, n):
        m = msgs[i]
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            out.append(Violation("shape", i, "not a dict with a string 'role'"))
            continue
        role = m["role"]
        if role not in ("system", "developer", "user", "assistant", "tool"):
            out.append(Violation("role", i, f"role {role!r} is not an OpenAI chat role"))
            continue
        if role == "tool":
            tid = str(m.get("tool_call_id"))
            if not in_batch or (tid not in pending and tid not in answered_batch):
                out.append(Violation("orphan_result", i, "messages with role 'tool' must be a "
                                     "response to a preceding message with 'tool_calls'", tid))
            elif tid in answered_batch and tid not in pending:
                out.append(Violation("duplicate_result", i, "tool_call_id answered twice", tid))
            else:
                pending.pop(tid, None)
                answered_batch.add(tid)
            continue
        # any non-tool message closes the batch
        for tid, at in pending.items():
            out.append(Violation("unanswered_call", at, "An assistant message with 'tool_calls' "
                                 "must be followed by tool messages responding to each "
                                 "'tool_call_id'", tid))
        pending, answered_batch, in_batch = {}, set(), False
        content = m.get("content")
        if role in ("user", "system", "developer") and content in (None, "", []):
            out.append(Violation("empty_content", i, f"{role} message content is empty"))
        if role == "assistant":
            calls = m.get("tool_calls") or []
            for c in calls:
                fn = c.get("function") if isinstance(c, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(fn.get("arguments"), str):
                    cid = str(c.get("id")) if isinstance(c, Mapping) else None
                    out.append(Violation("arguments_type", i, "function.arguments must be a JSON "
                                         "string", cid))
            if not calls and (content is None or content == ""):
                out.append(Violation("empty_content", i, "assistant message has neither content "
                                     "nor tool_calls"))
            ids = calls_opened(m, Format.OPENAI)
            pending = {t: i for t in ids}
            in_batch = bool(ids)
    for tid, at in pending.items():
        if not (allow_open and at == n - 1):
            out.append(Violation("unanswered_call", at, "An assistant message with 'tool_calls' "
                                 "must be followed by tool messages responding to each "
                                 "'tool_call_id'", tid))
    return sorted(out, key=lambda v: (v.index if v.index is not None else -1))


_RESPONSES_ROLES = ("user", "assistant", "system", "developer")


def _is_message_item(m: Mapping[str, Any]) -> bool:
    return m.get("type", "message") == "message"


def _validate_responses(msgs: Sequence[Mapping[str, Any]], lo: int,
                        allow_open: bool) -> list[Violation]:
    """Responses API input items (see the module docstring for the rules and sources)."""
    out: list[Violation] = []
    n = len(msgs)
    pending: dict[str, int] = {}     # open call_id -> index of its call item
    answered: set[str] = set()       # call_ids answered since the last message item
    seen_ids: set[str] = set()       # call_ids opened (duplicates)
    referenced = False               # an item_reference since the last message item
    # Rebuild the open calls at ``lo``: they were opened after the last message item.
    k = lo - 1
    while k >= 0 and isinstance(msgs[k], Mapping) and not _is_message_item(msgs[k]):
        k -= 1
    earlier: set[str] | None = None  # call_ids opened in msgs[:k + 1], read when needed

    def opened_before(cid: str) -> bool:
        """Whether a call in the request before this point opened ``cid``."""
        nonlocal earlier
        if cid in seen_ids:
            return True
        if earlier is None:
            earlier = {c for x in msgs[:k + 1] if isinstance(x, Mapping)
                       for c in calls_opened(x, Format.RESPONSES)}
        return cid in earlier

    for j in range(k + 1, lo):
        m = msgs[j]
        referenced = referenced or m.get("type") == "item_reference"
        for cid in calls_opened(m, Format.RESPONSES):
            pending[cid] = j
            seen_ids.add(cid)
        for cid in calls_answered(m, Format.RESPONSES):
            if pending.pop(cid, None) is not None or (
                    referenced and cid not in answered and not opened_before(cid)):
                answered.add(cid)

    def close(at_end: bool) -> None:
        for cid, at in pending.items():
            if at_end and allow_open and all(isinstance(msgs[j], Mapping) and
                                             role_of(msgs[j], Format.RESPONSES) == "assistant"
                                             for j in range(at + 1, n)):
                continue
            out.append(Violation("unanswered_call", at, f"No tool output found for function "
                                 f"call {cid}: the call's output must follow it before the "
                                 "next message item", cid))

    for i in range(lo, n):
        m = msgs[i]
        t = m.get("type") if isinstance(m, Mapping) else None
        if not isinstance(m, Mapping) or not (isinstance(m.get("role"), str) or isinstance(t, str)):
            out.append(Violation("shape", i, "not an item: expected a dict with a string 'type' "
                                 "(or a message with a string 'role')"))
            continue
        if t is None or t == "message":
            role = m.get("role")
            if role not in _RESPONSES_ROLES:
                out.append(Violation("role", i, f"role {role!r} is not a Responses message role "
                                     "(user, assistant, system, developer)"))
            if m.get("content") in (None, "", []):
                out.append(Violation("empty_content", i, "message item content is empty"))
            close(False)
            pending, answered, referenced = {}, set(), False
            continue
        if t == "item_reference":
            referenced = True
        if t in RESPONSES_CALLS:
            cid = m.get("call_id")
            if not isinstance(cid, str) or not cid:
                out.append(Violation("shape", i, f"{t} item without a string 'call_id'"))
                continue
            if t == "function_call" and not isinstance(m.get("arguments"), str):
                out.append(Violation("arguments_type", i, "function_call arguments must be a "
                                     "JSON string", cid))
            if cid in seen_ids:
                out.append(Violation("duplicate_tool_id", i, "call_id used by two calls", cid))
            seen_ids.add(cid)
            pending[cid] = i
        for cid in calls_answered(m, Format.RESPONSES):
            if cid in pending:
                del pending[cid]
                answered.add(cid)
            elif cid in answered:
                out.append(Violation("duplicate_result", i, "call_id answered twice", cid))
            elif referenced and not opened_before(cid):
                answered.add(cid)    # an item_reference of this round may stand for its call
            else:
                out.append(Violation("orphan_result", i, f"No tool call found for function call "
                                     f"output with call_id {cid}: no open call before it has "
                                     "this call_id", cid))
        if t == "reasoning":
            nxt = msgs[i + 1] if i + 1 < n else None
            ok = isinstance(nxt, Mapping) and nxt.get("type") != "reasoning" and (
                (nxt.get("type") in RESPONSES_MODEL_ITEMS)
                or (_is_message_item(nxt) and nxt.get("role") == "assistant"))
            if not ok:
                out.append(Violation("orphan_reasoning", i, f"Item {m.get('id')!r} of type "
                                     "'reasoning' was provided without its required following "
                                     "item (the message or call it belongs to)"))
    close(True)
    return sorted(out, key=lambda v: (v.index if v.index is not None else -1))


def raise_for(violations: Sequence[Violation], *, rules: frozenset[str] | None = None) -> None:
    """Raise :class:`InvalidHistoryError` for the first violation (of ``rules``, if given).

    The error names the message index, the tool id and the fix of the rule that failed
    (:data:`FIXES`)."""
    for v in violations:
        if rules is None or v.rule in rules:
            raise InvalidHistoryError(f"invalid history: {v}; fix: {v.fix}", index=v.index,
                                      tool_id=v.tool_id, rule=v.rule, fix=v.fix)
