"""The planner: a pure function from a history and its token counts to a compaction plan.

``plan()`` awaits nothing and touches no file: it decides whether to compact and which
atomic units to keep, evict (into the summary) or shorten. ``apply()`` executes exactly
that plan given the summary text. The driver (``MessageCompactor``) does the I/O around it.

Decision rules (defaults in :class:`PlanConfig`):

1. Trigger when system prompt + tool schemas + messages exceed ``high_watermark`` x the
   usable window (window minus reserved output tokens).
2. The floor can never go: system prompt, tool schemas, pinned units, the last unit (the
   turn in progress), the unit that opened an extended-thinking tool loop still in
   progress, and (optionally) the first user message. Floor + summary must fit the window,
   else :class:`ContextOverflowError` (or, when chosen explicitly, old tool results in the
   floor are shortened: ``overflow="truncate_tool_results"``).
3. Tool-result clearing first: old tool results (all but the last ``clear_keep_last``
   tool uses') are replaced by placeholders, oldest first, until the request reaches the
   low watermark; if that brings it under the watermarks' midpoint, the plan only clears.
4. Otherwise, walking back from the end, keep whole recent units while the total (the
   summary counted at its budget) stays under ``low_watermark`` x window; keep more, up
   to ``keep_recent`` messages, while it stays under the midpoint of the two watermarks.
   Units with a message of positive ``compactor_priority`` are kept first (room
   permitting); expired (``compactor_ttl``) and negative-priority units are passed over.
   Everything older that is not in the floor goes into the summary, including the
   previous summary (rolling summaries stay one message). When the summary comes out
   shorter than its budget, :func:`fill_target` keeps more recent units in the room it
   left, so the result uses the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._clearing import Clearing, clear, plan_clearings
from ._errors import ConfigError, ContextOverflowError
from ._format import (PRIORITY_KEY, SUMMARY_CLOSE, SUMMARY_OPEN, TTL_KEY, Format, blocks,
                      tool_result_text)
from ._tokens import MESSAGE_OVERHEAD, TokenCounter
from ._units import PinPredicate, Unit, current_turn_start, group_units

#: Smallest summary worth inserting, in tokens; with less room the plan overflows.
MIN_SUMMARY_TOKENS = 24
#: Tokens a summary message costs beyond its text (tags and framing).
SUMMARY_FRAMING = MESSAGE_OVERHEAD + 12
#: A shortened tool result keeps at least this many tokens of its text.
MIN_TRUNCATED_TOKENS = 64

_OVERFLOW_POLICIES = ("raise", "truncate_tool_results")

#: A message dict may carry ``{PRIORITY_KEY: n}``: n > 0 keeps its unit verbatim, before
#: the recent units, when the target has room; n < 0 lets a recent unit go to the summary
#: instead of staying verbatim. ``{TTL_KEY: n}``: after n later messages the message has
#: expired: its unit is not kept verbatim and its tool results are cleared first (even
#: among the last ``clear_keep_last``). Like ``compactor_pin``, both keys must be
#: stripped before a request is sent (``strip_metadata``).
# (PRIORITY_KEY and TTL_KEY are defined in compactor._format, beside PIN_KEY.)


def _priority(m: Mapping[str, Any]) -> int:
    v = m.get(PRIORITY_KEY, 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _expired(messages: Sequence[Mapping[str, Any]], i: int) -> bool:
    ttl = messages[i].get(TTL_KEY)
    return isinstance(ttl, int) and not isinstance(ttl, bool) and len(messages) - 1 - i > ttl


@dataclass(frozen=True)
class PlanConfig:
    """What to keep and when to compact.

    Attributes:
        high_watermark: trigger when the request exceeds this share of the usable window.
        low_watermark: compact down to this share (a target; the floor may exceed it).
        keep_recent: keep at least this many of the last messages (snapped outward to
            unit boundaries) when they fit under the watermarks' midpoint.
        keep_first_user: keep the first user message (the task) verbatim.
        max_summary_tokens: cap of the summary, in tokens.
        summary_share: the summary may take at most this share of the low-watermark target.
        overflow: ``"raise"`` (default) or ``"truncate_tool_results"`` -- when the floor does
            not fit, shorten the longest tool results in it (the originals stay archived).
        fill_to_target: when the summary comes out shorter than its budget, keep more recent
            units verbatim in the room it left (:func:`fill_target`), so the result reaches
            the low watermark. Off by default: on the shared transcripts at the default
            watermarks it used 99% of the target instead of 81-91%, but compacted 16-52% more
            often (each compaction a prompt-cache miss and a summarizer call) and kept fewer
            LoCoMo answers (190 vs 197 of 314) -- the room goes to the summary instead.
        clear_tool_results: before summarizing, replace old tool results (all but those of
            the last ``clear_keep_last`` tool uses, not of ``clear_exclude_tools``, at least
            ``clear_min_tokens`` tokens long, not pinned) with a placeholder holding the
            archive reference and their identifiers (``compactor._clearing``); when that
            brings the request under the watermarks' midpoint, nothing is summarized.

    Raises:
        ConfigError: a value is out of range (the message names the field).
    """

    high_watermark: float = 0.85
    low_watermark: float = 0.65
    keep_recent: int = 10
    keep_first_user: bool = False
    max_summary_tokens: int = 8000
    summary_share: float = 0.85
    overflow: str = "raise"
    clear_tool_results: bool = False
    fill_to_target: bool = False
    clear_keep_last: int = 3
    clear_exclude_tools: tuple[str, ...] = ()
    clear_min_tokens: int = 100

    def __post_init__(self) -> None:
        if not 0.0 < self.high_watermark <= 1.0:
            raise ConfigError(f"high_watermark must be in (0, 1], got {self.high_watermark}; "
                              "fix: e.g. 0.7", field="high_watermark")
        if not 0.0 < self.low_watermark < self.high_watermark:
            raise ConfigError(f"low_watermark must be in (0, high_watermark={self.high_watermark})"
                              f", got {self.low_watermark}; fix: e.g. 0.4", field="low_watermark")
        if not isinstance(self.keep_recent, int) or self.keep_recent < 0:
            raise ConfigError(f"keep_recent must be an integer >= 0, got {self.keep_recent!r}",
                              field="keep_recent")
        if self.max_summary_tokens < 0:
            raise ConfigError("max_summary_tokens must be >= 0; fix: e.g. 2000",
                              field="max_summary_tokens")
        if not 0.0 <= self.summary_share <= 1.0:
            raise ConfigError(f"summary_share must be in [0, 1], got {self.summary_share}",
                              field="summary_share")
        if not isinstance(self.clear_keep_last, int) or self.clear_keep_last < 0:
            raise ConfigError(f"clear_keep_last must be an integer >= 0, got "
                              f"{self.clear_keep_last!r}; fix: e.g. 3", field="clear_keep_last")
        if not isinstance(self.clear_min_tokens, int) or self.clear_min_tokens < 0:
            raise ConfigError(f"clear_min_tokens must be an integer >= 0, got "
                              f"{self.clear_min_tokens!r}; fix: e.g. 100", field="clear_min_tokens")
        if isinstance(self.clear_exclude_tools, str):
            raise ConfigError("clear_exclude_tools must be a tuple of tool names, not a string; "
                              'fix: e.g. ("read_file",)', field="clear_exclude_tools")
        if self.overflow not in _OVERFLOW_POLICIES:
            raise ConfigError(f"overflow must be one of {_OVERFLOW_POLICIES}, got "
                              f"{self.overflow!r}", field="overflow")


@dataclass(frozen=True)
class Truncation:
    """Shorten the text of block ``block`` of message ``index`` to ``keep_chars`` characters."""

    index: int
    block: int
    keep_chars: int


@dataclass(slots=True)
class Plan:
    """A compaction decision. All token figures are estimates, in tokens.

    ``kept``: message indices kept verbatim, in order. ``evicted``: message indices that go
    into the summary (the previous summary's index among them). ``summary_budget``: the
    tokens the summary may take (0: no summary is inserted). ``tokens_after`` assumes the
    summary uses its whole budget. ``cleared``: tool results of kept messages replaced by
    placeholders (see ``compactor._clearing``; ``tokens_saved`` each, for the ledger); a
    plan with ``cleared`` and no ``evicted`` only clears (``reason`` "tool results
    cleared"; no summary is needed).
    """

    compact: bool
    reason: str
    fmt: Format
    window: int
    tokens_before: int
    tokens_after: int = 0
    summary_budget: int = 0
    kept: tuple[int, ...] = ()
    evicted: tuple[int, ...] = ()
    previous_summary_index: int | None = None
    units_kept: int = 0
    units_evicted: int = 0
    floor_tokens: int = 0
    truncations: tuple[Truncation, ...] = field(default=())
    cleared: tuple[Clearing, ...] = field(default=())

    @property
    def evicted_units_exist(self) -> bool:
        """Whether anything leaves the context."""
        return bool(self.evicted)


def plan(messages: Sequence[Mapping[str, Any]], fmt: Format, counts: Sequence[int], *,
         overhead_tokens: int, window: int, config: PlanConfig = PlanConfig(),
         force: bool = False, summarize: bool = True, pin: PinPredicate | None = None,
         units: Sequence[Unit] | None = None, counter: TokenCounter | None = None,
         messages_tokens: int | None = None) -> Plan:
    """Decide whether and how to compact. Pure: no I/O, no awaiting.

    Args:
        messages: a valid history (Anthropic: without the system prompt).
        fmt: its wire format.
        counts: tokens of each message (same length as ``messages``).
        overhead_tokens: system prompt + tool schemas, in tokens.
        window: the usable context window in tokens (reserved output already subtracted).
        config: thresholds and keep rules.
        force: plan a compaction even under the high watermark.
        summarize: False plans a plain cut with no summary (the truncation baseline).
        pin: extra pin predicate ``(index, message) -> bool``.
        units: precomputed ``group_units(messages, fmt, pin)``.
        counter: needed only by ``overflow="truncate_tool_results"``.
        messages_tokens: ``sum(counts)`` when the caller keeps it (the compactor's cache
            does): the under-threshold decision is then O(1) instead of O(len(messages)).

    Returns:
        A :class:`Plan`; ``plan.compact`` is False when nothing needs doing.

    Raises:
        ContextOverflowError: the floor plus the smallest summary does not fit the window
            and the overflow policy is ``"raise"`` (or shortening could not make it fit).
        ConfigError: ``counts`` does not match ``messages``, or the window is not positive.
    """
    if len(counts) != len(messages):
        raise ConfigError(f"counts has {len(counts)} entries for {len(messages)} messages",
                          field="counts")
    if window <= 0:
        raise ConfigError(f"window must be > 0 tokens, got {window}; fix: a larger window or a "
                          "smaller max_tokens reserve", field="window")
    total = overhead_tokens + (sum(counts) if messages_tokens is None else messages_tokens)
    if total <= config.high_watermark * window and not force:
        return Plan(False, "under the high watermark", fmt, window, total, total)
    if units is None:
        units = group_units(messages, fmt, pin)
    if not units:
        return Plan(False, "empty history", fmt, window, total, total)
    clearings: list[Clearing] = []
    if config.clear_tool_results:
        pinned = [i for u in units if u.pinned or u.kind == "system" for i in range(u.start, u.end)]
        cands = plan_clearings(messages, fmt, keep_last=config.clear_keep_last,
                               exclude_tools=config.clear_exclude_tools,
                               min_tokens=config.clear_min_tokens, counter=counter, skip=pinned,
                               expired=[i for i in range(len(messages)) if TTL_KEY in messages[i]
                                        and _expired(messages, i)])
        low_t = config.low_watermark * window
        after = total
        for c in cands:  # oldest first, until the target is reached
            if after <= low_t:
                break
            clearings.append(c)
            after -= c.tokens_saved
        if clearings:
            counts = list(counts)
            for c in clearings:
                counts[c.index] -= c.tokens_saved
            mid_t = (config.low_watermark + config.high_watermark) / 2 * window
            if after <= mid_t:
                every = tuple(range(len(messages)))
                return Plan(True, "tool results cleared", fmt, window, total, after,
                            kept=every, units_kept=len(units), cleared=tuple(clearings),
                            previous_summary_index=None)

    utok = [sum(counts[u.start:u.end]) for u in units]
    last = len(units) - 1
    in_floor = [u.kind == "system" or u.pinned for u in units]
    in_floor[last] = True
    k = current_turn_start(messages, units, fmt)
    if k is not None:
        in_floor[k] = True
    if config.keep_first_user:
        for j, u in enumerate(units):
            if u.kind == "message" and messages[u.start].get("role") == "user":
                in_floor[j] = True
                break
    floor = overhead_tokens + sum(t for t, f in zip(utok, in_floor) if f)

    budget = 0
    if summarize:
        budget = min(config.max_summary_tokens,
                     int(config.summary_share * config.low_watermark * window))
        budget = max(budget, MIN_SUMMARY_TOKENS)
    framing = SUMMARY_FRAMING if summarize else 0
    truncations: tuple[Truncation, ...] = ()
    need_min = floor + (MIN_SUMMARY_TOKENS + framing if summarize else 0)
    if need_min > window:
        if config.overflow == "truncate_tool_results" and counter is not None:
            truncations, saved = _plan_truncations(messages, units, in_floor, counter,
                                                   need_min - window)
            floor -= saved
        if floor + (MIN_SUMMARY_TOKENS + framing if summarize else 0) > window:
            raise ContextOverflowError(floor_tokens=floor,
                                       summary_tokens=MIN_SUMMARY_TOKENS + framing if summarize else 0,
                                       window_tokens=window)
    if summarize:
        budget = min(budget, window - floor - framing)

    low = config.low_watermark * window
    mid = (config.low_watermark + config.high_watermark) / 2 * window
    current = floor + (budget + framing if summarize else 0)
    keep = list(in_floor)
    # per-message priority and TTL: high-priority units are kept first (highest, then
    # newest, while the target has room); an expired or low-priority unit is passed over
    # by the recent walk (it goes to the summary)
    prio = [max((_priority(messages[i]) for i in range(u.start, u.end)), default=0) for u in units]
    gone = [any(_expired(messages, i) for i in range(u.start, u.end)) for u in units]
    passed = [(gone[j] or prio[j] < 0) and not in_floor[j] for j in range(len(units))]
    for j in sorted((j for j in range(len(units)) if prio[j] > 0 and not keep[j] and not gone[j]
                     and units[j].kind != "summary"), key=lambda j: (-prio[j], -j)):
        if current + utok[j] <= low:
            keep[j] = True
            current += utok[j]
    recent = _keep_recent(units, utok, in_floor, keep, last, config.keep_recent,
                          lambda r, t, msgs: current + r + t <= low
                          or (msgs < config.keep_recent and current + r + t <= mid),
                          passed=passed)
    current += recent

    evicted_units = [j for j, kp in enumerate(keep) if not kp]
    prev_summary = next((u.start for u in units if u.kind == "summary"), None)
    if not evicted_units or all(units[j].kind == "summary" for j in evicted_units):
        if total > window:
            raise ContextOverflowError(floor_tokens=total, summary_tokens=0, window_tokens=window,
                                       detail="nothing left to evict")
        return Plan(False, "nothing to evict", fmt, window, total, total, floor_tokens=floor)

    kept_idx = tuple(i for j, u in enumerate(units) if keep[j] for i in range(u.start, u.end))
    ev_idx = tuple(i for j in evicted_units for i in range(units[j].start, units[j].end))
    kept_set = set(kept_idx)
    cleared = tuple(c for c in clearings if c.index in kept_set)
    return Plan(True, "forced" if force and total <= config.high_watermark * window
                else "over the high watermark", fmt, window, total,
                tokens_after=current, summary_budget=budget if summarize else 0,
                kept=kept_idx, evicted=ev_idx, previous_summary_index=prev_summary,
                units_kept=sum(keep), units_evicted=len(evicted_units), floor_tokens=floor,
                truncations=truncations, cleared=cleared)


def fill_target(p: Plan, messages: Sequence[Mapping[str, Any]], counts: Sequence[int],
                summary_tokens: int, config: PlanConfig = PlanConfig(),
                units: Sequence[Unit] | None = None) -> Plan:
    """Plan ``p`` with more recent units kept when the summary came out shorter than its
    budget: the evicted units next to the kept suffix move back into ``kept``, newest
    first, while the result (with the summary at ``summary_tokens``) stays under the low
    watermark. Pure. The summary already covers them (a short duplicate, traded for
    verbatim turns). At least one unit stays evicted; units stay whole.

    Args:
        p: a plan from :func:`plan` on ``messages``.
        messages, counts: the same history and per-message tokens the plan was made from.
        summary_tokens: the summary text's actual tokens.
        config: the plan's config (its ``low_watermark``).
        units: ``group_units(messages, p.fmt)`` when the caller has it.
    """
    if not p.compact or not p.evicted or summary_tokens >= p.summary_budget:
        return p
    if units is None:
        units = group_units(messages, p.fmt)
    kept = set(p.kept)
    low = config.low_watermark * p.window
    current = p.tokens_after - p.summary_budget + summary_tokens
    evicted_units = [j for j, u in enumerate(units) if u.start not in kept]
    movable = [j for j in evicted_units if units[j].kind != "summary"]
    first_ev = movable[0] if movable else None
    added: list[int] = []
    for j in range(len(units) - 1, -1, -1):
        u = units[j]
        if u.start in kept:
            continue
        if u.kind == "summary" or j == first_ev:
            break
        t = sum(counts[u.start:u.end])
        if current + t > low:
            break
        added.append(j)
        current += t
    if not added:
        return p
    for j in added:
        kept.update(range(units[j].start, units[j].end))
    from dataclasses import replace

    return replace(p, kept=tuple(sorted(kept)),
                   evicted=tuple(i for i in p.evicted if i not in kept),
                   tokens_after=int(current) + p.summary_budget - summary_tokens,
                   units_kept=p.units_kept + len(added), units_evicted=p.units_evicted - len(added))


def _keep_recent(units: Sequence[Unit], utok: Sequence[int], in_floor: Sequence[bool],
                 keep: list[bool], last: int, keep_recent: int,
                 fits: Callable[[float, int, int], bool], start: float = 0,
                 passed: Sequence[bool] | None = None) -> float:
    """Walk back from the end keeping whole units (``keep[j] = True``) while
    ``fits(recent_tokens, unit_tokens, recent_messages)``; stop at the first that does not
    fit or at the previous summary. Returns the recent tokens kept (``start`` plus the new
    ones); floor units, and units ``passed`` marks (expired or low priority), are passed
    over."""
    recent = start
    msgs = units[last].size
    for j in range(last - 1, -1, -1):
        if in_floor[j]:
            msgs += units[j].size
            continue
        if units[j].kind == "summary":
            break
        if keep[j]:
            msgs += units[j].size
            continue
        if passed is not None and passed[j]:
            continue
        t = utok[j]
        if not fits(recent, t, msgs):
            break
        keep[j] = True
        recent += t
        msgs += units[j].size
    return recent


def _plan_truncations(messages: Sequence[Mapping[str, Any]], units: Sequence[Unit],
                      in_floor: Sequence[bool], counter: TokenCounter,
                      excess: int) -> tuple[tuple[Truncation, ...], int]:
    """Shorten the longest tool results in floor units until ``excess`` tokens are saved."""
    cands: list[tuple[int, int, int, int]] = []  # (tokens, msg, block, chars)
    for j, u in enumerate(units):
        if not in_floor[j] or u.kind == "system":
            continue
        for i in range(u.start, u.end):
            m = messages[i]
            if m.get("role") == "tool" and isinstance(m.get("content"), str):
                text = m["content"]
                cands.append((counter.count(text), i, -1, len(text)))
                continue
            if m.get("type") == "function_call_output" and isinstance(m.get("output"), str):
                text = m["output"]      # a Responses call output
                cands.append((counter.count(text), i, -1, len(text)))
                continue
            if not isinstance(m.get("content"), list):
                continue
            for b_i, b in enumerate(blocks(m)):
                if b.get("type") == "tool_result":
                    text = tool_result_text(b)
                    cands.append((counter.count(text), i, b_i, len(text)))
    cands.sort(reverse=True)
    out: list[Truncation] = []
    saved = 0
    for tok, i, b_i, chars in cands:
        if saved >= excess or tok <= MIN_TRUNCATED_TOKENS:
            break
        cut = min(tok - MIN_TRUNCATED_TOKENS, excess - saved + 32)
        keep_tok = tok - cut
        out.append(Truncation(i, b_i, max(1, int(chars * keep_tok / max(tok, 1)))))
        saved += cut
    return tuple(out), saved


def summary_message(text: str, fmt: Format) -> dict[str, Any]:
    """The message that carries a summary: Anthropic -- a ``user`` message; OpenAI -- a
    ``system`` message; Responses -- a ``developer`` message item (``{"type": "message",
    "role": "developer", "content": [{"type": "input_text", ...}]}``): like the OpenAI
    ``system`` summary it is the application's context, not words the user said (a
    ``user`` item would be answered as a request), and ``developer`` is the role OpenAI
    gives application instructions in the Responses API (reasoning models take it in
    place of ``system``). The text is wrapped in ``<conversation_summary>`` tags."""
    body = f"{SUMMARY_OPEN}\n{text.strip()}\n{SUMMARY_CLOSE}"
    if fmt is Format.RESPONSES:
        return {"type": "message", "role": "developer",
                "content": [{"type": "input_text", "text": body}]}
    return {"role": "user" if fmt is Format.ANTHROPIC else "system", "content": body}


def truncation_notice(removed_chars: int) -> str:
    """The marker appended to a shortened tool result."""
    return (f"\n[... {removed_chars} characters removed by the context compactor; "
            "the full result is archived ...]")


def apply(p: Plan, messages: Sequence[Mapping[str, Any]],
          summary: str | None,
          ordinals: Mapping[int, int | None] | Sequence[int | None] | None = None
          ) -> list[Mapping[str, Any]]:
    """Execute plan ``p`` on the same ``messages`` it was made from.

    Returns the new history in the same format: (OpenAI: the system prompt messages,)
    the summary message (if ``summary`` is non-empty), then the kept messages in their
    original order. Kept messages are the caller's own objects, untouched, except those a
    clearing or truncation changes (copies). ``ordinals``: the archive ordinal of each
    message (by index), cited in clearing placeholders; None when unknown.
    """
    if not p.compact:
        return list(messages)
    kept = [messages[i] for i in p.kept]
    if p.cleared:
        by: dict[int, list[Clearing]] = {}
        for c in p.cleared:
            by.setdefault(c.index, []).append(c)
        at = {idx: n for n, idx in enumerate(p.kept)}
        for idx, cs in by.items():
            if idx in at:
                o = None
                if ordinals is not None:
                    o = ordinals.get(idx) if isinstance(ordinals, Mapping) else \
                        (ordinals[idx] if idx < len(ordinals) else None)
                kept[at[idx]] = clear(kept[at[idx]], cs, o)
    if p.truncations:
        by_msg: dict[int, list[Truncation]] = {}
        for t in p.truncations:
            by_msg.setdefault(t.index, []).append(t)
        pos = {idx: n for n, idx in enumerate(p.kept)}
        for idx, ts in by_msg.items():
            if idx in pos:
                kept[pos[idx]] = _shorten(kept[pos[idx]], ts)
    if not summary:
        return kept
    sm = summary_message(summary, p.fmt)
    if p.fmt is Format.ANTHROPIC:
        return [sm, *kept]
    n_sys = 0
    for i in p.kept:
        if messages[i].get("role") in ("system", "developer") and i == n_sys:
            n_sys += 1
        else:
            break
    return [*kept[:n_sys], sm, *kept[n_sys:]]


def _shorten(message: Mapping[str, Any], ts: Sequence[Truncation]) -> dict[str, Any]:
    import copy

    m = copy.deepcopy(dict(message))
    for t in ts:
        if t.block < 0:
            key = "output" if m.get("type") == "function_call_output" else "content"
            text = m[key]
            m[key] = text[:t.keep_chars] + truncation_notice(len(text) - t.keep_chars)
            continue
        b = m["content"][t.block]
        c = b.get("content")
        if isinstance(c, str):
            b["content"] = c[:t.keep_chars] + truncation_notice(len(c) - t.keep_chars)
        elif isinstance(c, list):
            budget = t.keep_chars
            new: list[Any] = []
            removed = 0
            for x in c:
                if isinstance(x, Mapping) and x.get("type") == "text":
                    s = str(x.get("text", ""))
                    take = s[:max(0, budget)]
                    removed += len(s) - len(take)
                    budget -= len(take)
                    if take:
                        new.append({**x, "text": take})
                else:
                    new.append(x)
            new.append({"type": "text", "text": truncation_notice(removed)})
            b["content"] = new
    return m
