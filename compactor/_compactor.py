"""``MessageCompactor``: the async driver around the pure planner.

Before each model call the agent loop hands it the history; it counts (incrementally),
asks the planner, and when a compaction is due it runs the summarizer (with chunking and
a fallback to the offline summarizer), applies the plan, checks the result against the
provider rules and the window, reports to the ledger sink and returns the new history.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import (CompactorError, ConfigError, ContextOverflowError, InvalidHistoryError,
                      SummarizerError)
from ._facts import missing
from ._format import SUMMARY_CLOSE, SUMMARY_OPEN, Format, detect_format, is_summary, text_of
from ._plan import Plan, PlanConfig, apply, plan, summary_message
from ._sink import LedgerSink, NullSink
from ._store import SessionStore, canonical_json
from .ledger._codec import mask_secrets
from ._summary import (ExtractiveSummarizer, Summarizer, SummaryRequest, add_missing_facts,
                       must_keep_items)
from ._tokens import (Tier, TokenCounter, WindowConfig, default_counter, message_tokens,
                      system_tokens, tools_tokens)
from ._units import PinPredicate, group_units
from ._validate import PAIRING_RULES, raise_for, validate

log = logging.getLogger("compactor")

#: A summary may exceed its input by this many tokens (its headings) before it counts as
#: "longer than its input", which is a failure.
SUMMARY_SLACK_TOKENS = 48


class CompactorInvariantError(CompactorError, AssertionError):
    """The compactor produced a history that breaks a provider rule or the window: a bug
    in this package, never sent."""


def content_hash(message: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the message's canonical JSON (sorted keys, compact separators,
    UTF-8). Equal hashes mean byte-identical canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(message).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CompactionResult:
    """What ``compact_if_needed`` did.

    Attributes:
        messages: the history to send, in the format it was given.
        compacted: whether a compaction happened.
        tokens_before / tokens_after: the request's estimated input tokens (system prompt,
            tool schemas and messages) before and after, in tokens.
        ratio: share of tokens removed, ``1 - tokens_after / tokens_before`` (0 if none).
        retention_score: share of the evicted span's must-keep items present in the new
            context (1.0 when nothing was evicted or the span had none).
        must_keep_total / must_keep_kept: the counts behind ``retention_score``.
        removed_hashes: ``content_hash`` of every message that left the context, in order.
        removed: the messages that left the context (the caller's own objects).
        summary: the summary text inserted (None if none).
        summarizer: name of the summarizer that produced it (after any fallback).
        duration_s: wall time of the call, in seconds.
        window: the usable window the decision used, in tokens.
        plan: the plan that was applied.
        fmt: the wire format.
    """

    messages: list[Mapping[str, Any]]
    compacted: bool
    tokens_before: int
    tokens_after: int
    ratio: float
    retention_score: float
    must_keep_total: int
    must_keep_kept: int
    removed_hashes: tuple[str, ...]
    removed: tuple[Mapping[str, Any], ...]
    summary: str | None
    summarizer: str | None
    duration_s: float
    window: int
    plan: Plan
    fmt: Format


@dataclass
class _Cache:
    msgs: list[Mapping[str, Any]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    total: int = 0


@dataclass
class SessionState:
    """Per-session state kept in memory: the running summary, compaction count and time,
    and the token-count cache of the last history seen."""

    session_id: str
    summary: str | None = None
    compaction_count: int = 0
    last_compaction_at: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    cache: _Cache = field(default_factory=_Cache, repr=False)
    overhead_key: tuple[Any, ...] | None = field(default=None, repr=False)
    overhead: int = 0
    last_input: tuple[Any, ...] | None = field(default=None, repr=False)
    last_result: CompactionResult | None = field(default=None, repr=False)
    origin: tuple[int, Any, Any] | None = field(default=None, repr=False)
    ordinals: list[int | None] = field(default_factory=list, repr=False)
    next_ordinal: int = 0
    archived_ranges: list[list[int]] = field(default_factory=list)
    disk: dict[str, Any] | None = field(default=None, repr=False)
    view: list[Mapping[str, Any]] = field(default_factory=list, repr=False)


class MessageCompactor:
    """Keeps a history inside its context window. Safe to share across sessions.

    Args:
        summarizer: the primary summarizer (default: the offline :class:`ExtractiveSummarizer`).
            ``None`` with ``summarize=False`` gives the plain-truncation baseline.
        fallback: used when the primary fails or returns an unusable summary (default: the
            extractive summarizer; the agent's call never fails because summarizing failed).
        counter: the :class:`TokenCounter` (default: tiktoken, offline fallback).
        config: the :class:`PlanConfig` (watermarks, keep rules, summary budget).
        windows: the :class:`WindowConfig` (tiers, model map, per-model overrides).
        window: a fixed window in tokens for every call (wins over model/tier).
        reserve_output_tokens: output tokens reserved out of the window when a call does not
            pass ``max_tokens``.
        sink: the :class:`LedgerSink` that receives ``compaction`` and
            ``summarizer_fallback`` events (default: none).
        pin: extra pin predicate ``(index, message) -> bool``.
        summarize: False drops the evicted span with no summary (truncation baseline).
        max_concurrency: how many chunk summaries run at once when a span is split.
        agent_id: reported with every ledger event.
        store: a :class:`SessionStore`: every message is archived on first sight (before it
            can leave the context) and session state is saved after each compaction, so
            ``store.restore(session_id)`` gives the full original history back and a
            restarted process resumes the session.
        prices: USD per million input and output tokens by model name (fnmatch patterns
            allowed), used for ``cost_usd`` of compaction records; default
            :data:`DEFAULT_PRICES`.

    Raises:
        ConfigError: an argument is out of range.
    """

    def __init__(self, *, summarizer: Summarizer | None = None,
                 fallback: Summarizer | None = None, counter: TokenCounter | None = None,
                 config: PlanConfig | None = None, windows: WindowConfig | None = None,
                 window: int | None = None, reserve_output_tokens: int = 0,
                 sink: LedgerSink | None = None, pin: PinPredicate | None = None,
                 summarize: bool = True, max_concurrency: int = 4,
                 agent_id: str | None = None, store: SessionStore | None = None,
                 prices: Mapping[str, tuple[float, float]] | None = None) -> None:
        if window is not None and window <= 0:
            raise ConfigError(f"window must be > 0 tokens, got {window}", field="window")
        if reserve_output_tokens < 0:
            raise ConfigError("reserve_output_tokens must be >= 0", field="reserve_output_tokens")
        if max_concurrency < 1:
            raise ConfigError("max_concurrency must be >= 1", field="max_concurrency")
        self.extractive = ExtractiveSummarizer()
        self.summarizer: Summarizer = summarizer or self.extractive
        self.fallback: Summarizer = fallback or self.extractive
        self.counter: TokenCounter = counter or default_counter()
        self.config = config or PlanConfig()
        self.windows = windows or WindowConfig()
        self.window = window
        self.reserve_output_tokens = reserve_output_tokens
        self.sink: LedgerSink = sink or NullSink()
        self.pin = pin
        self.summarize = summarize
        self.max_concurrency = max_concurrency
        self.agent_id = agent_id
        self.store = store
        self.prices = DEFAULT_PRICES if prices is None else dict(prices)
        self._sessions: dict[str, SessionState] = {}

    # ------------------------------------------------------------------ sessions
    def session(self, session_id: str | None) -> SessionState:
        """The state of a session (created on first use; ``None`` is the default session)."""
        key = session_id or "default"
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = SessionState(key)
            if self.store is not None:
                disk = self.store.load_state(key)
                if disk:
                    s.summary = disk.get("summary")
                    s.compaction_count = int(disk.get("compaction_count", 0))
                    s.last_compaction_at = disk.get("last_compaction_at")
                    s.next_ordinal = int(disk.get("next_ordinal", 0))
                    s.archived_ranges = [list(r) for r in disk.get("archived_ranges", [])]
                    s.disk = disk
        return s

    def usable_window(self, *, model: str | None = None, tier: Tier | None = None,
                      window: int | None = None, max_tokens: int | None = None) -> int:
        """The window a call may fill, in tokens: the call's ``window``, else the
        compactor's, else the model's/tier's, minus the reserved output tokens."""
        w = window or self.window or self.windows.window_for(model, tier)
        reserve = self.reserve_output_tokens if max_tokens is None else max_tokens
        usable = w - reserve
        if usable <= 0:
            raise ConfigError(f"max_tokens ({reserve}) leaves no room in a {w}-token window; "
                              "fix: lower max_tokens or use a larger window/tier",
                              field="max_tokens")
        return usable

    # ------------------------------------------------------------------ counting
    def _count(self, s: SessionState, messages: Sequence[Mapping[str, Any]], fmt: Format) -> list[int]:
        """Per-message counts, reusing the session cache when the history only grew
        (same first and last-seen message objects): O(new messages). New messages are
        validated, given ordinals and (with a store) archived before anything else."""
        c = s.cache
        n0 = len(c.msgs)
        old: dict[int, int | None] | None = None
        if (n0 and len(messages) >= n0 and messages[n0 - 1] is c.msgs[n0 - 1]
                and messages[0] is c.msgs[0]):
            start = n0
        else:
            old = {id(m): o for m, o in zip(c.msgs, s.ordinals)}
            keep_alive = c.msgs  # noqa: F841  (ids in ``old`` stay valid while we assign)
            s.cache = c = _Cache()
            s.ordinals = []
            start = 0
        if start < len(messages):
            raise_for(validate(messages, fmt, start=start), rules=PAIRING_RULES)
            new = messages[start:]
            counts = [message_tokens(m, fmt, self.counter) for m in new]
            s.ordinals.extend(self._assign(s, new, fmt, old))
            c.msgs.extend(new)
            c.counts.extend(counts)
            c.total += sum(counts)
        return c.counts

    def _assign(self, s: SessionState, new: Sequence[Mapping[str, Any]], fmt: Format,
                old: dict[int, int | None] | None) -> list[int | None]:
        """Ordinals of new messages (their place in the agent's original history): known
        ones keep theirs (same object, or the saved view of a resumed session); the rest get
        the next ordinals and are archived. Summaries we inserted get None."""
        view = (s.disk or {}).get("view") if old is not None else None
        s.disk = None if old is not None else s.disk
        out: list[int | None] = []
        fresh: list[tuple[int, str, Mapping[str, Any]]] = []
        for k, m in enumerate(new):
            o = old.get(id(m), -1) if old is not None else -1
            if o == -1 and view is not None and k < len(view):
                vo, vh = view[k]
                if vo is None and is_summary(m, fmt):
                    o = None
                elif vo is not None and vh == content_hash(m):
                    o = vo
                else:
                    view = None
            if o == -1:
                if is_summary(m, fmt):
                    o = None
                else:
                    o = s.next_ordinal
                    s.next_ordinal += 1
                    if self.store is not None:
                        fresh.append((o, content_hash(m), m))
            out.append(o)
        if fresh and self.store is not None:
            self.store.append(s.session_id, fresh)
        return out

    def _overhead(self, s: SessionState, system: Any, tools: Any) -> int:
        key = (id(system), id(tools), system if isinstance(system, str) else None)
        if s.overhead_key != key:
            s.overhead = system_tokens(system, self.counter) + tools_tokens(tools, self.counter)
            s.overhead_key = key
            s._refs = (system, tools)  # type: ignore[attr-defined]  # keep ids alive
        return s.overhead

    def count_request(self, messages: Sequence[Mapping[str, Any]], *, system: Any = None,
                      tools: Sequence[Mapping[str, Any]] | None = None,
                      fmt: Format | None = None) -> int:
        """Estimated input tokens of a whole request (no cache, no validation)."""
        f = fmt or detect_format(messages)
        return (system_tokens(system, self.counter) + tools_tokens(tools, self.counter)
                + sum(message_tokens(m, f, self.counter) for m in messages))

    # ------------------------------------------------------------------ planning
    def dry_run(self, messages: Sequence[Mapping[str, Any]], *, model: str | None = None,
                tier: Tier | None = None, window: int | None = None, system: Any = None,
                tools: Sequence[Mapping[str, Any]] | None = None,
                max_tokens: int | None = None, session_id: str | None = None,
                force: bool = False, fmt: Format | None = None) -> Plan:
        """The plan ``compact_if_needed`` would execute, without summarizing or changing
        state (beyond the count cache). Raises as :func:`plan` does."""
        f = fmt or detect_format(messages)
        s = self.session(session_id)
        counts = self._count(s, messages, f)
        usable = self.usable_window(model=model, tier=tier, window=window, max_tokens=max_tokens)
        return plan(messages, f, counts, overhead_tokens=self._overhead(s, system, tools),
                    window=usable, config=self.config, force=force, summarize=self.summarize,
                    pin=self.pin, counter=self.counter)

    async def compact_if_needed(self, messages: Sequence[Mapping[str, Any]], *,
                                model: str | None = None, tier: Tier | None = None,
                                window: int | None = None, system: Any = None,
                                tools: Sequence[Mapping[str, Any]] | None = None,
                                max_tokens: int | None = None, session_id: str | None = None,
                                force: bool = False, fmt: Format | None = None) -> CompactionResult:
        """Return ``messages`` unchanged when they fit under the high watermark, else a
        compacted history (same format) that fits the window.

        Args:
            messages: the history (Anthropic: without the system prompt; OpenAI: with it).
            model / tier / window: what fixes the context window (see ``usable_window``).
            system: Anthropic top-level system prompt (str or text blocks), counted.
            tools: tool schemas, counted.
            max_tokens: output tokens reserved out of the window.
            session_id: sessions have separate caches, summaries and locks.
            force: compact even under the high watermark.
            fmt: the wire format (default: detected).

        Raises:
            InvalidHistoryError: the history pairs calls and results wrongly (index and id named).
            ContextOverflowError: what can never be removed does not fit the window.
            ConfigError: the window/reserve leave no room.
        """
        t0 = time.perf_counter()
        if not messages:
            raise InvalidHistoryError("messages is empty; fix: send at least one user message",
                                      rule="empty_messages")
        f = fmt or detect_format(messages)
        s = self.session(session_id)
        async with s.lock:
            key = (len(messages), id(messages[0]), id(messages[-1]), id(system), id(tools))
            if s.last_input == key and s.last_result is not None and not force:
                return s.last_result   # a concurrent caller already compacted this history
            work = self._resolve(s, messages)
            counts = self._count(s, work, f)
            overhead = self._overhead(s, system, tools)
            usable = self.usable_window(model=model, tier=tier, window=window,
                                        max_tokens=max_tokens)
            p = plan(work, f, counts, overhead_tokens=overhead, window=usable,
                     config=self.config, force=force, summarize=self.summarize, pin=self.pin,
                     counter=self.counter, messages_tokens=s.cache.total)
            if not p.compact:
                return CompactionResult(list(work), False, p.tokens_before, p.tokens_before,
                                        0.0, 1.0, 0, 0, (), (), None, None,
                                        time.perf_counter() - t0, usable, p, f)
            result = await self._execute(s, p, work, counts, overhead, usable, model, t0,
                                         session_id, messages)
            s.last_input = key
            s.last_result = result
            s.origin = (len(messages), messages[0], messages[-1])
            s.view = result.messages
            return result

    @staticmethod
    def _resolve(s: SessionState, messages: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """The history to work on. An agent may pass its own full, ever-growing history
        every call (a drop-in wrapper does): when ``messages`` extends the caller's history
        of the last compaction (same first and last objects at the same places), the part
        already compacted is replaced by that compaction's result, and only the new
        messages are appended to it."""
        if s.origin is not None:
            n, first, last = s.origin
            if len(messages) >= n and messages[0] is first and messages[n - 1] is last:
                return [*s.view, *messages[n:]]
        elif s.disk and s.disk.get("origin"):   # resumed from disk: match by content hash
            o, view = s.disk["origin"], s.disk.get("view") or []
            n = int(o["length"])
            if (len(messages) >= n and content_hash(messages[0]) == o["first"]
                    and content_hash(messages[n - 1]) == o["last"]
                    and all(vo is None or (vo < n and content_hash(messages[vo]) == vh)
                            for vo, vh in view)):
                fmt = detect_format(messages)
                rebuilt = [summary_message(s.summary or "", fmt) if vo is None else messages[vo]
                           for vo, vh in view]
                return [*rebuilt, *messages[n:]]
        return messages

    # ------------------------------------------------------------------ execution
    async def _execute(self, s: SessionState, p: Plan, messages: Sequence[Mapping[str, Any]],
                       counts: Sequence[int], overhead: int, usable: int, model: str | None,
                       t0: float, session_id: str | None,
                       caller: Sequence[Mapping[str, Any]]) -> CompactionResult:
        f = p.fmt
        prev = None
        if p.previous_summary_index is not None:
            prev = _summary_text(messages[p.previous_summary_index])
        span = [messages[i] for i in p.evicted if i != p.previous_summary_index]
        kept = [messages[i] for i in p.kept]
        summary: str | None = None
        used_name: str | None = None
        total_items, present = 0, 0
        usage: list[dict[str, Any]] = []
        if self.summarize:
            kept_text = "\n".join(text_of(m) for m in kept)
            req = SummaryRequest(span, f, prev, p.summary_budget, self.counter,
                                 session_id=session_id, context=kept_text, usage=usage)
            summary, used_name = await self._summarize(req, session_id, model)
            items = must_keep_items(span, prev)
            summary, present = add_missing_facts(summary, items, kept_text, p.summary_budget,
                                                 self.counter)
            total_items = len(items)
        new = apply(p, messages, summary)
        # exact count of the result: kept counts are cached; recount only what changed
        cnt = {i: c for i, c in zip(p.kept, (counts[i] for i in p.kept))}
        kept_ids = {id(messages[i]): i for i in p.kept}
        new_counts = []
        for m in new:
            i = kept_ids.get(id(m))
            new_counts.append(cnt[i] if i is not None else message_tokens(m, f, self.counter))
        after = overhead + sum(new_counts)
        if after > usable:
            raise ContextOverflowError(floor_tokens=p.floor_tokens,
                                       summary_tokens=after - p.floor_tokens, window_tokens=usable,
                                       detail="the compacted history is still over the window")
        bad = validate(new, f)
        if bad:
            raise CompactorInvariantError(f"compaction produced an invalid history: {bad[0]}")
        removed = tuple(messages[i] for i in p.evicted)
        hashes = tuple(content_hash(m) for m in removed)
        # prime the cache with the new history so the next call counts only new messages
        ords = s.ordinals
        evicted_ords = [o for o in (ords[i] for i in p.evicted) if o is not None]
        new_ords: list[int | None] = [None] * (len(new) - len(p.kept)) + [ords[i] for i in p.kept]
        s.cache = _Cache(list(new), list(new_counts), sum(new_counts))
        s.ordinals = new_ords
        s.summary = summary
        s.compaction_count += 1
        s.last_compaction_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        s.archived_ranges = _merge_ranges(s.archived_ranges, evicted_ords)
        archive_ref = None
        if self.store is not None:
            archive_ref = {"path": str(self.store.session_dir(s.session_id).relative_to(
                self.store.root)), "ranges": _merge_ranges([], evicted_ords)}
            self.store.save_state(s.session_id, {
                "summary": summary, "compaction_count": s.compaction_count,
                "last_compaction_at": s.last_compaction_at, "next_ordinal": s.next_ordinal,
                "archived_ranges": s.archived_ranges,
                "view": [[o, None if o is None else content_hash(m)] for o, m in zip(new_ords, new)],
                "origin": {"length": len(caller), "first": content_hash(caller[0]),
                           "last": content_hash(caller[-1])},
            })
        duration = time.perf_counter() - t0
        ratio = 1.0 - after / p.tokens_before if p.tokens_before else 0.0
        score = present / total_items if total_items else 1.0
        self.sink.emit("compaction", {
            "session_id": session_id, "agent_id": self.agent_id, "model": model,
            "format": f.value, "tokens_before": p.tokens_before, "tokens_after": after,
            "ratio": round(ratio, 4), "window": usable, "summarizer": used_name,
            "summary_tokens": self.counter.count(summary) if summary else 0,
            "retention_score": round(score, 4), "must_keep_total": total_items,
            "must_keep_kept": present, "messages_removed": len(removed),
            "units_removed": p.units_evicted, "duration_s": round(duration, 6),
            "removed_hashes": list(hashes), "compaction_count": s.compaction_count,
            "archive_ref": archive_ref,
            "summarizer_input_tokens": sum(int(u.get("input_tokens", 0)) for u in usage),
            "summarizer_output_tokens": sum(int(u.get("output_tokens", 0)) for u in usage),
            "cost_usd": price_usage(usage, self.prices),
        })
        return CompactionResult(new, True, p.tokens_before, after, ratio, score, total_items,
                                present, hashes, removed, summary, used_name, duration, usable, p, f)

    async def _summarize(self, req: SummaryRequest, session_id: str | None,
                         model: str | None) -> tuple[str, str]:
        """Run the primary summarizer (chunked if needed); on failure, the fallback."""
        name = getattr(self.summarizer, "name", type(self.summarizer).__name__)
        try:
            text = await self._chunked(self.summarizer, req)
            return self._check(text, req), name
        except Exception as e:  # any failure falls back; it never becomes content
            log.warning("summarizer %s failed (%s); falling back", name, mask_secrets(str(e)))
            fb = getattr(self.fallback, "name", type(self.fallback).__name__)
            self.sink.emit("summarizer_fallback", {
                "session_id": session_id, "agent_id": self.agent_id, "model": model,
                "summarizer": name, "fallback": fb,
                "error": mask_secrets(f"{type(e).__name__}: {e}")[:500]})
            try:
                text = await self._chunked(self.fallback, req)
                return self._check(text, req), fb
            except Exception as e2:
                log.error("fallback summarizer %s failed too (%s); inserting a notice", fb,
                          mask_secrets(str(e2)))
                self.sink.emit("summarizer_fallback", {
                    "session_id": session_id, "agent_id": self.agent_id, "model": model,
                    "summarizer": fb, "fallback": "notice",
                    "error": mask_secrets(f"{type(e2).__name__}: {e2}")[:500]})
                return notice_summary(req), "notice"

    def _check(self, text: Any, req: SummaryRequest) -> str:
        """A summary must be non-empty text, no longer than its input, and fit its budget
        (an over-budget one is cut at a line boundary)."""
        if not isinstance(text, str) or not text.strip():
            raise SummarizerError("empty or non-text summary")
        text = text.replace(SUMMARY_OPEN, "").replace(SUMMARY_CLOSE, "").strip()
        src = sum(self.counter.count(text_of(m)) for m in req.messages) + \
            self.counter.count(req.previous_summary or "") + sum(self.counter.count(p) for p in req.partials)
        n = self.counter.count(text)
        if src and n > src + SUMMARY_SLACK_TOKENS:
            raise SummarizerError(f"summary ({n} tokens) is longer than its input ({src} tokens)")
        if n > req.max_tokens:
            lines = text.splitlines()
            while lines and self.counter.count("\n".join(lines)) > req.max_tokens:
                lines.pop()
            text = "\n".join(lines).strip()
            if not text:
                raise SummarizerError(f"summary ({n} tokens) does not fit its budget "
                                      f"({req.max_tokens} tokens)")
        return text

    async def _chunked(self, summarizer: Summarizer, req: SummaryRequest) -> str:
        """Split a span larger than ``summarizer.input_window`` on unit boundaries,
        summarize the chunks concurrently (at most ``max_concurrency`` at once), merge."""
        limit = getattr(summarizer, "input_window", None)
        if not limit:
            return await summarizer.summarize(req)
        counts = [message_tokens(m, req.fmt, self.counter) for m in req.messages]
        prev = self.counter.count(req.previous_summary or "")
        if sum(counts) + prev <= limit:
            return await summarizer.summarize(req)
        chunks: list[list[Mapping[str, Any]]] = [[]]
        size = 0
        for u in group_units(req.messages, req.fmt):
            t = sum(counts[u.start:u.end])
            if chunks[-1] and size + t > limit:
                chunks.append([])
                size = 0
            chunks[-1].extend(req.messages[u.start:u.end])
            size += t
        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(part: list[Mapping[str, Any]]) -> str:
            async with sem:
                r = SummaryRequest(part, req.fmt, None, req.max_tokens, req.counter,
                                   session_id=req.session_id, usage=req.usage)
                return self._check(await summarizer.summarize(r), r)

        partials = await asyncio.gather(*(one(c) for c in chunks))
        merge = SummaryRequest((), req.fmt, req.previous_summary, req.max_tokens, req.counter,
                               partials=tuple(partials), session_id=req.session_id,
                               usage=req.usage)
        return await summarizer.summarize(merge)


#: USD per million (input, output) tokens, from Anthropic's and OpenAI's pricing pages
#: (November 2026 list prices; override with ``MessageCompactor(prices=...)``).
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5*": (1.0, 5.0),
    "claude-sonnet-4*": (3.0, 15.0),
    "claude-opus-4-5*": (5.0, 25.0),
    "claude-opus-4-1*": (15.0, 75.0),
    "gpt-4o-mini*": (0.15, 0.60),
    "gpt-4o*": (2.50, 10.0),
}


def price_usage(usage: Sequence[Mapping[str, Any]],
                prices: Mapping[str, tuple[float, float]]) -> float | None:
    """USD cost of summarizer calls (``usage`` dicts with model, input_tokens, output_tokens);
    0.0 when there were none (the offline summarizer), None when a model has no price."""
    import fnmatch

    total = 0.0
    for u in usage:
        model = str(u.get("model", ""))
        rate = prices.get(model) or next((v for k, v in prices.items()
                                          if fnmatch.fnmatchcase(model, k)), None)
        if rate is None:
            return None
        total += (int(u.get("input_tokens", 0)) * rate[0]
                  + int(u.get("output_tokens", 0)) * rate[1]) / 1e6
    return round(total, 6)


def _merge_ranges(ranges: list[list[int]], ordinals: Sequence[int]) -> list[list[int]]:
    """Inclusive ordinal ranges covering ``ranges`` plus ``ordinals``, merged and sorted."""
    pts = sorted({o for a, b in ranges for o in range(a, b + 1)} | set(ordinals))
    out: list[list[int]] = []
    for o in pts:
        if out and o == out[-1][1] + 1:
            out[-1][1] = o
        else:
            out.append([o, o])
    return out


def notice_summary(req: SummaryRequest) -> str:
    """The last resort when every summarizer failed: a notice that messages were removed
    (they are in the archive); the must-keep check then adds the key facts it can."""
    return (f"[{len(req.messages)} earlier messages were removed to fit the context window; "
            "no summary could be produced. Ask to recall them if needed.]")


def _summary_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping))
    return str(content or "").replace(SUMMARY_OPEN, "").replace(SUMMARY_CLOSE, "").strip()


__all__ = ["CompactionResult", "CompactorInvariantError", "MessageCompactor", "SessionState",
           "content_hash", "missing", "summary_message"]
