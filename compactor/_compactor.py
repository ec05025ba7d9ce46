"""``MessageCompactor``: the async driver around the pure session state machine and planner.

Before each model call the agent loop hands it the history. The driver hashes what is
new, lets :func:`compactor._session.resolve` read the call against the session (by content:
rebuilt, round-tripped or restarted histories resolve as the same objects would), archives
new messages, counts (incrementally), asks :func:`compactor._plan.plan`, and when a
compaction is due runs the summarizer (chunked, with a fallback), applies the plan, checks
the result against the provider rules and the window, saves the session state and reports
to the ledger. File I/O and CPU-heavy work (hashing or counting many messages, the offline
summarizer) run in threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._errors import CompactorError, ConfigError, ContextOverflowError, InvalidHistoryError
from ._facts import missing
from ._format import SUMMARY_CLOSE, SUMMARY_OPEN, Format, detect_format, messages_view, text_of
from ._plan import Plan, PlanConfig, apply, fill_target, plan, summary_message
from ._prices import DEFAULT_PRICES, price_usage
from ._session import (HistoryRewriteError, Resolution, SessionState, after_compaction, commit,
                       merge_ranges, nodes_for, resolve, view_resolution)
from ._sink import LedgerSink, NullSink
from ._store import (ArchiveNode, SessionStoreProtocol, StateConflictError, content_hash,
                     encode_session_id)
from ._summarizing import SummaryRunner
from ._summary import (ExtractiveSummarizer, Summarizer, SummaryRequest, add_missing_facts,
                       must_keep_items)
from ._tokens import (Tier, TokenCounter, WindowConfig, check_tokens, default_counter,
                      message_tokens, system_tokens, tools_tokens, usable_tokens)
from ._units import PinPredicate
from ._validate import PAIRING_RULES, raise_for, validate

log = logging.getLogger("compactor")

#: Hash or count more new messages than this in a thread, off the event loop.
OFF_LOOP_MESSAGES = 64
#: Sessions kept in memory by default (least recently used evicted; state reloads from
#: the store).
DEFAULT_MAX_SESSIONS = 1024
#: Attempts at a compaction whose state save lost a race with another writer.
STATE_RETRIES = 3


class CompactorInvariantError(CompactorError, AssertionError):
    """The compactor produced a history that breaks a provider rule or the window: a bug
    in this package, never sent."""


@dataclass(slots=True)
class CompactionResult:
    """What ``compact_if_needed`` did. Treat it as read-only (it is not frozen: building a
    frozen dataclass of this size costs more than the rest of an under-threshold call).

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
        recall: the block of archived messages recalled for this request (question-time
            recall, ``recall_share > 0`` with a store), or None.
        request_messages: what to send when recall placed a block (``messages`` with the
            block next to the newest user turn), else None. Continue the session from
            ``messages``: the block belongs to this request only.
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
    recall: Any = None
    request_messages: list[Mapping[str, Any]] | None = None

    def to_send(self) -> list[Mapping[str, Any]]:
        """The messages to send for this request: ``request_messages`` when recall placed
        a block, else ``messages``."""
        return self.request_messages if self.request_messages is not None else self.messages

    @property
    def sent_tokens(self) -> int:
        """Our estimate, in tokens, of the request :meth:`to_send` gives: ``tokens_after``,
        plus the recalled block's tokens (``recall.tokens``, the compactor's counter) when
        recall placed one (``request_messages`` set and not equal to ``messages``: a history
        ending in an assistant turn has nowhere to put a block). What a wrapper compares
        with the provider's input-token count to calibrate, and what a proxy reports as
        sent."""
        placed = (self.recall is not None and self.request_messages is not None
                  and self.request_messages != self.messages)
        return self.tokens_after + (int(getattr(self.recall, "tokens", 0) or 0) if placed else 0)


@dataclass
class _Live:
    """A session in memory: its state, its lock, and the last call (for the O(new
    messages) path: the call's messages and hashes, its resolution, the counts of its
    work)."""

    state: SessionState
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    prev_msgs: list[Mapping[str, Any]] | None = None
    prev_hashes: list[str] = field(default_factory=list)
    prev_res: Resolution | None = None
    alt: tuple[list[Mapping[str, Any]], list[str], Resolution] | None = None
    #: copies (:func:`_snapshot`) of the last messages of ``prev_msgs`` / of ``alt``'s
    prev_tail: list[Any] = field(default_factory=list)
    alt_tail: list[Any] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    total: int = 0
    overhead_key: tuple[Any, ...] | None = None
    overhead: int = 0

    #: the snapshot index from which ``prev_hashes`` (and the matching tails of the work
    #: hashes and the branch) are not computed yet (None: all are)
    pending: int | None = None

    def forget(self) -> None:
        """Drop the last-call caches (the next call takes the slow path)."""
        self.prev_msgs, self.prev_hashes, self.prev_res, self.alt = None, [], None, None
        self.prev_tail, self.alt_tail = [], []
        self.counts, self.total, self.pending = [], 0, None

    def materialize(self) -> None:
        """Compute the hashes left for later on the hot path (no store): the snapshot's,
        then the same messages' in the work and the branch (both end with them)."""
        k = self.pending
        if k is None or self.prev_msgs is None:
            self.pending = None
            return
        snap, hs = self.prev_msgs, self.prev_hashes
        by_id = {}
        for i in range(k, len(snap)):
            if hs[i] is None:
                hs[i] = content_hash(snap[i])
            by_id[id(snap[i])] = hs[i]
        r = self.prev_res
        if r is not None:
            wh, j = r.work_hashes, len(r.work_hashes) - 1
            while j >= 0 and wh[j] is None:
                wh[j] = by_id.get(id(r.work[j])) or content_hash(r.work[j])
                j -= 1
            br, pos = self.state.branch, len(self.state.branch) - 1
            while pos >= 0 and br[pos] is None:
                br[pos] = hs[pos - r.offset]
                pos -= 1
        self.pending = None


class MessageCompactor:
    """Keeps a history inside its context window. Safe to share across sessions and tasks.

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
        store: a session store (:class:`~compactor.SessionStore` or any
            :class:`~compactor.SessionStoreProtocol`): every message is archived once, by
            content, before it can leave the context, and the session state is saved after
            each compaction, so ``store.restore(session_id)`` gives the full original
            history back and a restarted process (or another worker) resumes the session.
        prices: USD per million input and output tokens by model name (fnmatch patterns
            allowed), used for ``cost_usd`` of compaction records; default
            :data:`compactor._prices.DEFAULT_PRICES`.
        max_sessions: sessions kept in memory (least recently used evicted; with a store
            their state reloads on the next call).
        recall_share: question-time recall (with a store): archived spans relevant to the
            newest user turn are placed next to it, after the cached prefix, taking at most
            this share of the usable window (0: off, the default; ``docs/recall.md`` has
            the measurements: LoCoMo answers in what is sent 51% -> 86% of the ceiling at
            0.1, prompt-cache reads unchanged, about +17% uncached input tokens).

    Raises:
        ConfigError: an argument is out of range.
    """

    def __init__(self, *, summarizer: Summarizer | None = None,
                 fallback: Summarizer | None = None, counter: TokenCounter | None = None,
                 config: PlanConfig | None = None, windows: WindowConfig | None = None,
                 window: int | None = None, reserve_output_tokens: int = 0,
                 sink: LedgerSink | None = None, pin: PinPredicate | None = None,
                 summarize: bool = True, max_concurrency: int = 4,
                 agent_id: str | None = None, store: SessionStoreProtocol | None = None,
                 prices: Mapping[str, tuple[float, float]] | None = None,
                 max_sessions: int = DEFAULT_MAX_SESSIONS, recall_share: float = 0.0) -> None:
        self.window = None if window is None else check_tokens("window", window)
        self.reserve_output_tokens = check_tokens("reserve_output_tokens",
                                                  reserve_output_tokens, allow_zero=True)
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError("max_concurrency must be an integer >= 1", field="max_concurrency")
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise ConfigError("max_sessions must be an integer >= 1; fix: e.g. 1024",
                              field="max_sessions")
        if isinstance(recall_share, bool) or not isinstance(recall_share, (int, float)) \
                or not 0.0 <= recall_share <= 0.5:
            raise ConfigError(f"recall_share must be a share of the window in [0, 0.5], got "
                              f"{recall_share!r}; fix: e.g. 0.1 (0 turns recall off)",
                              field="recall_share")
        self.recall_share = float(recall_share)
        self.extractive = ExtractiveSummarizer()
        self.summarizer: Summarizer = summarizer or self.extractive
        self.fallback: Summarizer = fallback or self.extractive
        self.counter: TokenCounter = counter or default_counter()
        self.config = config or PlanConfig()
        self.windows = windows or WindowConfig()
        self.sink: LedgerSink = sink or NullSink()
        self.pin = pin
        self.summarize = summarize
        self.max_concurrency = max_concurrency
        self.agent_id = agent_id
        self.store = store
        self.prices = DEFAULT_PRICES if prices is None else dict(prices)
        self.max_sessions = max_sessions
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self._emit_lock = threading.Lock()
        self._summaries = SummaryRunner(self)
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(cls, config: Any = None, **overrides: Any) -> "MessageCompactor":
        """A compactor built from ``compactor.toml`` (see ``docs/config.md``): ``config``
        is a path, a loaded config, or None (``$COMPACTOR_CONFIG``, then
        ``./compactor.toml``, then the shipped defaults); ``overrides`` are constructor
        arguments that win over the file.

        Raises:
            ConfigError: the file is unreadable or holds a bad value (one line naming the
                file, the dotted key and the fix).
        """
        from ._config import compactor_from_config

        return compactor_from_config(config, **overrides)

    # ------------------------------------------------------------------ sessions
    async def _session(self, session_id: str | None) -> _Live:
        """The in-memory session (loaded from the store on first use, off the loop).

        Raises:
            ConfigError: an id that cannot name a session (empty, ``.``, ``..``, NUL).
        """
        key = _key(session_id)
        encode_session_id(key)
        live = self._live.get(key)
        if live is not None:
            self._live.move_to_end(key)
            return live
        if self.store is not None:
            state = await asyncio.to_thread(self._load, key)
            live = self._live.get(key)   # another task loaded it meanwhile
            if live is not None:
                return live
        else:
            state = SessionState(key, chained=False)
        live = self._live[key] = _Live(state)
        self._evict()
        return live

    def _load(self, key: str) -> SessionState:
        """A session's state from the store (blocking: call it in a thread)."""
        if self.store is None:
            return SessionState(key, chained=False)
        return SessionState.from_json(key, self.store.load_state(key),
                                      self.store.branch_hashes(key))

    def _evict(self) -> None:
        """Drop least recently used sessions past ``max_sessions`` (never one in use)."""
        for key in list(self._live):
            if len(self._live) <= self.max_sessions:
                break
            if not self._live[key].lock.locked():
                del self._live[key]

    def forget_session(self, session_id: str | None) -> None:
        """Drop a session from memory (its store, if any, keeps everything; the next call
        reloads it)."""
        live = self._live.get(_key(session_id))
        if live is not None and not live.lock.locked():
            del self._live[_key(session_id)]

    def session_state_count(self) -> int:
        """How many sessions are in memory (at most ``max_sessions`` when none is busy)."""
        return len(self._live)

    def session(self, session_id: str | None) -> SessionState:
        """A session's state, for inspection (``compaction_count``, ``summary``, ``view``,
        ``branch``...): the one in memory, else read from the store (blocking), else new.
        Do not change it."""
        live = self._live.get(_key(session_id))
        if live is None:
            return self._load(_key(session_id))
        live.materialize()
        return live.state

    def usable_window(self, *, model: str | None = None, tier: Tier | None = None,
                      window: int | None = None, max_tokens: int | None = None) -> int:
        """The window a call may fill, in tokens: the call's ``window``, else the
        compactor's, else the model's/tier's, minus the reserved output tokens.

        Raises:
            ConfigError: ``window``/``max_tokens`` is not a positive integer, or the
                reserve leaves no room.
        """
        if window is not None:
            window = check_tokens("window", window)
        w = window or self.window or self.windows.window_for(model, tier)
        return usable_tokens(w, self.reserve_output_tokens if max_tokens is None else max_tokens)

    def count_request(self, messages: Sequence[Mapping[str, Any]], *, system: Any = None,
                      tools: Sequence[Mapping[str, Any]] | None = None,
                      fmt: Format | None = None) -> int:
        """Estimated input tokens of a whole request (no cache, no validation)."""
        f = fmt or detect_format(messages)
        return (system_tokens(system, self.counter) + tools_tokens(tools, self.counter)
                + sum(message_tokens(m, f, self.counter) for m in messages))

    # ------------------------------------------------------------------ reading a call
    async def _read(self, live: _Live, messages: Sequence[Mapping[str, Any]], f: Format,
                    ) -> tuple[Resolution, bool]:
        """:meth:`_read_sync` on the hot path (in place), in a thread when many messages
        are new. On any error the last-call caches are dropped (the next call takes the
        slow path), so a rejected call leaves nothing behind."""
        try:
            prev = live.prev_msgs
            if len(messages) - (len(prev) if prev is not None else 0) > OFF_LOOP_MESSAGES:
                return await asyncio.to_thread(self._read_sync, live, messages, f, True)
            return self._read_sync(live, messages, f, True)
        except BaseException:
            live.forget()
            raise

    async def _read_current(self, live: _Live, messages: Sequence[Mapping[str, Any]],
                            f: Format) -> tuple[Resolution, bool]:
        """:meth:`_read`, and with a store, when the call reads as a rewrite of the
        history, first make sure it is not this process that is behind: if another worker
        saved the session since, reload its state and read the call again."""
        err: HistoryRewriteError | None = None
        try:
            r, reuse = await self._read(live, messages, f)
            if self.store is None or (r.fork is None and not r.reset):
                return r, reuse
        except HistoryRewriteError as e:
            if self.store is None:
                raise
            err = e
        store, sid = self.store, live.state.session_id
        disk = await asyncio.to_thread(store.load_state, sid)
        if int((disk or {}).get("version", 0)) == live.state.version:
            if err is not None:
                raise err
            return r, reuse
        await self._reload(live)
        return await self._read(live, messages, f)

    def _read_sync(self, live: _Live, messages: Sequence[Mapping[str, Any]], f: Format,
                   inplace: bool = False) -> tuple[Resolution, bool]:
        """Hash the call (only what is new when it extends the last call -- or, right
        after a compaction, the result it returned), validate what is new, and resolve the
        call against the session. Returns the resolution and whether it extends a known
        call (so the cached counts apply). With ``inplace`` the known call's lists are
        extended (the snapshot then holds this call); otherwise nothing changes.

        The test "extends" is an equality test of the known prefix against a private
        snapshot: C-speed, and exact for the same objects, copies and rebuilt ones alike;
        a message replaced anywhere in the list fails it, and so does one of the last
        :data:`INPLACE_CHECK` rewritten in place (their content is compared with a copy
        taken when they were read)."""
        known = []
        if live.prev_msgs is not None and live.prev_res is not None:
            known.append((live.prev_msgs, live.prev_hashes, live.prev_res, False,
                          live.prev_tail))
        if live.alt is not None:
            known.append((*live.alt, True, live.alt_tail))
        for snap, hashes0, res, is_alt, tail0 in known:
            n0 = len(snap)
            if len(messages) < n0:
                continue
            tail = messages[n0:]
            if not isinstance(tail, list):
                tail = list(tail)
            if isinstance(messages, list):
                snap.extend(tail)                    # same length: == is one C loop
                same = messages == snap
                k = n0 - len(tail0)
                if not same and tail0 and messages[:k] == snap[:k] \
                        and _tail_unchanged(messages[k:n0], tail0):
                    # recent messages given as new dicts that differ only in where the
                    # cache breakpoint is: the same history
                    snap[k:n0] = messages[k:n0]
                    same = True
                if not (same and inplace):
                    del snap[n0:]
            else:
                same = list(messages[:n0]) == snap
                if same and inplace:
                    snap.extend(tail)
            # the identity test passes a message rewritten in place: compare the content
            # of the last ones with the copies taken when they were read
            if same and tail0 and not _tail_unchanged(messages[n0 - len(tail0):n0], tail0):
                same = False
                if inplace:
                    del snap[n0:]
            if not same:
                continue
            if inplace:
                tail0.extend(_tail_copy(tail))
                del tail0[:-INPLACE_CHECK]
            lazy = inplace and self.store is None and not is_alt
            new_hashes = [None] * len(tail) if lazy else _hash_all(tail, n0)
            if lazy and tail and live.pending is None:
                live.pending = n0
            if tail:
                raise_for(validate(messages, f, start=n0), rules=PAIRING_RULES)
            if inplace:
                hashes0.extend(new_hashes)
                hashes = hashes0
                if is_alt:
                    live.prev_msgs, live.prev_hashes, live.alt = snap, hashes0, None
                    live.prev_tail = live.alt_tail
            else:
                hashes = hashes0 + new_hashes
            r = resolve(live.state, messages, hashes, prev=res, prev_len=n0, inplace=inplace)
            return r, True
        live.materialize()
        hashes = _hash_all(messages)
        raise_for(validate(messages, f), rules=PAIRING_RULES)
        if inplace:
            live.prev_msgs, live.prev_hashes, live.alt = list(messages), hashes, None
            live.prev_tail = _tail_copy(messages)
        return resolve(live.state, messages, hashes), False

    async def _archive(self, live: _Live, r: Resolution,
                       messages: Sequence[Mapping[str, Any]]) -> None:
        """Write the resolution's new messages to the store (off the loop), then commit
        it to the session state."""
        s = live.state
        if self.store is not None and r.new:
            nodes = [ArchiveNode(pos, h, prev, messages[i])
                     for pos, h, prev, i in nodes_for(s, r)]
            await asyncio.to_thread(self._append, s.session_id, nodes, r)
        commit(s, r)
        if r.fork is not None or r.reset:
            await self._emit("history_rewrite", {
                "session_id": s.session_id, "agent_id": self.agent_id, "fork": r.fork,
                "state_reset": r.reset, "messages_new": len(r.new),
                "branch_length": len(s.branch)})

    def _append(self, sid: str, nodes: list[ArchiveNode], r: Resolution) -> None:
        """Archive nodes (blocking: in a thread); with recall on, index them too (an index
        that cannot be written is skipped: it is derived, and catches up next time)."""
        assert self.store is not None
        self.store.append(sid, nodes)
        if self.recall_share > 0:
            import sqlite3

            from ._recall import RecallIndex
            try:
                fmt = detect_format([n.message for n in nodes])
                RecallIndex.for_store(self.store).add(self.store, sid, nodes, fmt=fmt)
            except (sqlite3.Error, OSError) as e:
                log.warning("session %s: recall index not updated (%s)", sid, e)

    async def _with_recall(self, live: _Live, res: CompactionResult,
                           session_id: str | None) -> CompactionResult:
        """Place recalled archived spans in what is sent (``recall_share > 0``, a store,
        and something already out of the context); else ``res`` itself."""
        s = live.state
        if self.store is None or self.recall_share <= 0 or not (s.archived_ranges or s.view):
            return res
        from ._recall import with_recall

        # the ordinals whose original is in the context verbatim: the new view after a
        # compaction, else the call's work
        pairs = (s.view if res.compacted else
                 zip(live.prev_res.ordinals, live.prev_res.work_hashes)
                 if live.prev_res is not None else ())
        excl = {o for o, h in pairs
                if o is not None and h is not None and o < len(s.branch) and s.branch[o] == h}
        rr = await with_recall(self, res, session_id=session_id, share=self.recall_share,
                               chains=s.chains if s.chained else None, exclude_ordinals=excl)
        placed = rr.block and (len(rr.messages) != len(res.messages)
                               or any(a is not b for a, b in zip(rr.messages, res.messages)))
        if not placed:
            return res   # nothing found, or no place for it (the history ends in a reply)
        await self._emit("recall", {"session_id": session_id, "agent_id": self.agent_id,
                                    "refs": list(rr.block.ordinals), "tokens": rr.block.tokens})
        return dataclasses.replace(res, recall=rr.block, request_messages=rr.messages)

    async def _count_work(self, live: _Live, r: Resolution, reuse: bool, f: Format) -> list[int]:
        """Per-message counts of ``r.work``: the cached counts plus the new messages' when
        the call extends the last one, else all of them (off the loop when many)."""
        if reuse and len(live.counts) <= len(r.work):
            tail = r.work[len(live.counts):]
        else:
            live.counts, live.total, tail = [], 0, r.work
        if len(tail) > OFF_LOOP_MESSAGES:
            more = await asyncio.to_thread(self._count_all, tail, f)
        else:
            more = self._count_all(tail, f)
        live.counts.extend(more)
        live.total += sum(more)
        return live.counts

    def _count_all(self, msgs: Sequence[Mapping[str, Any]], f: Format) -> list[int]:
        return [message_tokens(m, f, self.counter) for m in msgs]

    def _overhead(self, live: _Live, system: Any, tools: Any) -> int:
        key = (id(system), id(tools), system if isinstance(system, str) else None,
               len(tools) if tools is not None else -1)
        if live.overhead_key != key:
            live.overhead = system_tokens(system, self.counter) + tools_tokens(tools, self.counter)
            live.overhead_key = key
        return live.overhead

    # ------------------------------------------------------------------ planning
    def dry_run(self, messages: Sequence[Mapping[str, Any]], *, model: str | None = None,
                tier: Tier | None = None, window: int | None = None, system: Any = None,
                tools: Sequence[Mapping[str, Any]] | None = None,
                max_tokens: int | None = None, session_id: str | None = None,
                force: bool = False, fmt: Format | None = None) -> Plan:
        """The plan ``compact_if_needed`` would execute on this call, without effects: the
        same reading of the call and the same plan, but nothing archived, no state
        changed, no summarizer called. Synchronous: with a store, a session not in
        memory yet is read from it here (inside async code, call it in a thread).
        Raises as :meth:`compact_if_needed` does."""
        if not messages:
            raise InvalidHistoryError("messages is empty; fix: send at least one user message",
                                      rule="empty_messages")
        f = fmt or detect_format(messages)
        usable = self.usable_window(model=model, tier=tier, window=window, max_tokens=max_tokens)
        key = _key(session_id)
        encode_session_id(key)
        live = self._live.get(key) or _Live(self._load(key))
        r, reuse = self._read_sync(live, messages, f)
        if reuse and len(live.counts) <= len(r.work):
            counts = live.counts + self._count_all(r.work[len(live.counts):], f)
        else:
            counts = self._count_all(r.work, f)
        overhead = system_tokens(system, self.counter) + tools_tokens(tools, self.counter)
        return plan(r.work, f, counts, overhead_tokens=overhead, window=usable,
                    config=self.config, force=force, summarize=self.summarize,
                    pin=self.pin, counter=self.counter, messages_tokens=sum(counts))

    async def compact_if_needed(self, messages: Sequence[Mapping[str, Any]], *,
                                model: str | None = None, tier: Tier | None = None,
                                window: int | None = None, system: Any = None,
                                tools: Sequence[Mapping[str, Any]] | None = None,
                                max_tokens: int | None = None, session_id: str | None = None,
                                force: bool = False, fmt: Format | None = None) -> CompactionResult:
        """Return ``messages`` unchanged when they fit under the high watermark, else a
        compacted history (same format) that fits the window.

        Args:
            messages: the history (Anthropic: without the system prompt; OpenAI: with it):
                the agent's full history, or the last result's messages with new ones
                appended; objects may be rebuilt between calls (identity is content).
            model / tier / window: what fixes the context window (see ``usable_window``).
            system: Anthropic top-level system prompt (str or text blocks), counted.
            tools: tool schemas, counted.
            max_tokens: output tokens reserved out of the window.
            session_id: sessions have separate state, archives and locks.
            force: compact even under the high watermark.
            fmt: the wire format (default: detected).

        Raises:
            InvalidHistoryError: the history pairs calls and results wrongly (index and id
                named), or rewrites messages before the summary of a compacted view
                (:class:`~compactor._session.HistoryRewriteError`).
            ContextOverflowError: what can never be removed does not fit the window.
            ConfigError: the window/reserve are not positive integers or leave no room.
        """
        t0 = time.perf_counter()
        if not messages:
            raise InvalidHistoryError("messages is empty; fix: send at least one user message",
                                      rule="empty_messages")
        usable = self.usable_window(model=model, tier=tier, window=window, max_tokens=max_tokens)
        f = fmt or detect_format(messages)
        live = self._live.get(_key(session_id))
        if live is None:
            live = await self._session(session_id)
        async with live.lock:
            for attempt in range(STATE_RETRIES):
                r, reuse = await self._read_current(live, messages, f)
                live.prev_res = r
                try:
                    if (self.store is not None and r.new) or r.fork is not None or r.reset:
                        await self._archive(live, r, messages)
                    else:
                        commit(live.state, r)
                    if reuse and len(r.work) - len(live.counts) <= OFF_LOOP_MESSAGES:
                        more = self._count_all(r.work[len(live.counts):], f)
                        live.counts.extend(more)
                        live.total += sum(more)
                        counts = live.counts
                    else:
                        counts = await self._count_work(live, r, reuse, f)
                except BaseException:
                    live.forget()
                    raise
                overhead = self._overhead(live, system, tools)
                p = plan(r.work, f, counts, overhead_tokens=overhead, window=usable,
                         config=self.config, force=force, summarize=self.summarize,
                         pin=self.pin, counter=self.counter, messages_tokens=live.total)
                if not p.compact:
                    res = CompactionResult(list(r.work), False, p.tokens_before,
                                           p.tokens_before, 0.0, 1.0, 0, 0, (), (), None, None,
                                           time.perf_counter() - t0, usable, p, f)
                    return await self._with_recall(live, res, session_id) \
                        if self.recall_share > 0 else res
                try:
                    res = await self._execute(live, r, p, counts, overhead, usable, model,
                                              t0, session_id, messages,
                                              last_try=attempt == STATE_RETRIES - 1)
                    return await self._with_recall(live, res, session_id) \
                        if self.recall_share > 0 else res
                except StateConflictError:
                    # another process compacted this session meanwhile: reload, read again
                    log.info("session %s: state changed on disk; reloading (attempt %d)",
                             live.state.session_id, attempt + 1)
                    await self._reload(live)
            raise AssertionError("unreachable: the last attempt never raises a conflict")

    def compact_sync(self, messages: Sequence[Mapping[str, Any]], *, timeout_s: float | None = None,
                     **kwargs: Any) -> CompactionResult:
        """:meth:`compact_if_needed` for synchronous agents: the same arguments, the same
        result. Runs on this compactor's own event loop in a background thread, so it works
        when no loop runs in the calling thread and when one does (it then blocks that
        loop while it waits: inside async code, ``await compact_if_needed`` instead). Use
        one style per compactor: sessions used from both could meet on two loops.

        Args:
            timeout_s: give up waiting after this many seconds (None: wait).

        Raises:
            TimeoutError: ``timeout_s`` passed (the compaction goes on in the background).
            Whatever :meth:`compact_if_needed` raises.
        """
        import concurrent.futures

        fut = asyncio.run_coroutine_threadsafe(self.compact_if_needed(messages, **kwargs),
                                               self._sync_loop())
        try:
            return fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"compact_sync did not finish within {timeout_s} s") from None

    def _sync_loop(self) -> asyncio.AbstractEventLoop:
        """The background loop of :meth:`compact_sync` (started on first use, a daemon)."""
        with self._emit_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="compactor-sync", daemon=True)
                t.start()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """Stop the background loop of :meth:`compact_sync`, if one was started."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)

    async def _reload(self, live: _Live) -> None:
        live.state = await asyncio.to_thread(self._load, live.state.session_id)
        live.forget()

    # ------------------------------------------------------------------ execution
    async def _execute(self, live: _Live, r: Resolution, p: Plan, counts: Sequence[int],
                       overhead: int, usable: int, model: str | None, t0: float,
                       session_id: str | None, caller: Sequence[Mapping[str, Any]], *,
                       last_try: bool = True) -> CompactionResult:
        """Summarize, apply, check, record. With a store the state is saved only if no
        other writer saved it since it was loaded (else :class:`StateConflictError`, and
        the caller reloads and tries again); on the last try a conflict leaves the other
        writer's state on disk and this result stands for this call (the archive holds
        every message either way; a ``state_conflict`` record says so)."""
        live.materialize()
        s = live.state
        f = p.fmt
        work = r.work
        prev = None
        if p.previous_summary_index is not None:
            prev = _summary_text(work[p.previous_summary_index])
        span_idx = [i for i in p.evicted if i != p.previous_summary_index]
        span = [work[i] for i in span_idx]
        sf = f
        if f is Format.RESPONSES:     # summarizers read Responses items as Messages API shapes
            sf, span = Format.ANTHROPIC, messages_view(span)
        kept = [work[i] for i in p.kept]
        summary: str | None = None
        used_name: str | None = None
        total_items, present = 0, 0
        usage: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        # a plan that only clears old tool results evicts nothing: no summarizer call;
        # a budget of 0 means the plan left no room for a summary
        if self.summarize and p.evicted and p.summary_budget > 0:
            kept_text = "\n".join(text_of(m) for m in kept)
            req = _request(span, sf, prev, p.summary_budget, self.counter, session_id,
                           kept_text, usage, s.checkpoint, [r.ordinals[i] for i in span_idx],
                           extra)
            summary, used_name = await self._summaries.run(req, session_id=session_id,
                                                           model=model, agent_id=self.agent_id)
            # a value the checkpoint replaced is not a fact to bring back
            items = must_keep_items(span, prev, superseded=[
                str(x.get("old")) for x in extra.get("superseded", []) if x.get("old")])
            summary, present = add_missing_facts(summary, items, kept_text, p.summary_budget,
                                                 self.counter)
            total_items = len(items)
        if summary and p.summary_budget and self.config.fill_to_target:
            # a summary shorter than its budget leaves room: more recent units stay verbatim
            p = fill_target(p, work, counts, self.counter.count(summary), self.config)
        new = apply(p, work, summary, ordinals=r.ordinals)
        # exact count of the result: kept counts are cached; recount only what changed
        by_id = {id(work[i]): counts[i] for i in p.kept}
        new_counts = [by_id[id(m)] if id(m) in by_id else message_tokens(m, f, self.counter)
                      for m in new]
        after = overhead + sum(new_counts)
        if after > usable:
            raise ContextOverflowError(floor_tokens=p.floor_tokens,
                                       summary_tokens=after - p.floor_tokens, window_tokens=usable,
                                       detail="the compacted history is still over the window")
        bad = validate(new, f)
        if bad:
            # a rule the caller's history already broke (an empty message, say) is theirs to
            # fix, not a compaction bug: only a rule the input kept is an invariant
            had = {v.rule for v in validate(work, f)}
            bad = [v for v in bad if v.rule not in had]
        if bad:
            raise CompactorInvariantError(f"compaction produced an invalid history: {bad[0]}")
        summary_pos = None
        if summary:
            sm = summary_message(summary, f)
            summary_pos = next(i for i, m in enumerate(new) if m == sm)
        elif r.summary_index is not None and r.summary_index in p.kept:
            summary, summary_pos = s.summary, p.kept.index(r.summary_index)  # kept as it was
        new_hashes = await asyncio.to_thread(_hash_all, new) if len(new) > OFF_LOOP_MESSAGES \
            else _hash_all(new)
        removed = tuple(work[i] for i in p.evicted)
        removed_hashes = tuple(r.work_hashes[i] for i in p.evicted)
        when = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        version = s.version
        after_compaction(s, r, new, new_hashes, p.kept, summary_pos, summary=summary,
                         evicted=p.evicted, when=when, checkpoint=extra.get("checkpoint"))
        archive_ref = None
        if self.store is not None:
            store, sid, body = self.store, s.session_id, s.to_json()
            try:
                s.version = await asyncio.to_thread(
                    lambda: store.save_state(sid, body, expected_version=version))
            except StateConflictError as e:
                s.version = version
                if not last_try:
                    raise
                await self._emit("state_conflict", {
                    "session_id": sid, "agent_id": self.agent_id, "expected": e.expected,
                    "found": e.found})
            archive_ref = {"session_id": sid, "ranges": merge_ranges(
                [], [o for o in (r.ordinals[i] for i in p.evicted) if o is not None])}
        # the next call extends the caller's full history, or this result
        if r.mode == "full":
            live.prev_res = view_resolution(s, new, "full", len(caller))
        else:
            live.prev_msgs, live.prev_hashes = None, []
        live.alt = (list(new), list(new_hashes), view_resolution(s, new, "view", len(new)))
        live.alt_tail = _tail_copy(new)
        live.counts, live.total = list(new_counts), sum(new_counts)
        duration = time.perf_counter() - t0
        ratio = 1.0 - after / p.tokens_before if p.tokens_before else 0.0
        score = present / total_items if total_items else 1.0
        await self._emit("compaction", {
            "session_id": session_id, "agent_id": self.agent_id, "model": model,
            "format": f.value, "tokens_before": p.tokens_before, "tokens_after": after,
            "ratio": round(ratio, 4), "window": usable, "summarizer": used_name,
            "summary_tokens": self.counter.count(summary) if summary else 0,
            "retention_score": round(score, 4), "must_keep_total": total_items,
            "must_keep_kept": present, "messages_removed": len(removed),
            "units_removed": p.units_evicted, "duration_s": round(duration, 6),
            "removed_hashes": list(removed_hashes), "compaction_count": s.compaction_count,
            "archive_ref": archive_ref, "superseded": extra.get("superseded", []),
            "cleared": [{"ordinal": r.ordinals[c.index], "tool": c.tool,
                         "tokens_saved": c.tokens_saved} for c in p.cleared],
            "tokens_cleared": sum(c.tokens_saved for c in p.cleared),
            "summarizer_input_tokens": sum(int(u.get("input_tokens", 0)) for u in usage),
            "summarizer_output_tokens": sum(int(u.get("output_tokens", 0)) for u in usage),
            "cost_usd": price_usage(usage, self.prices),
        })
        return CompactionResult(new, True, p.tokens_before, after, ratio, score, total_items,
                                present, removed_hashes, removed, summary, used_name, duration,
                                usable, p, f)

    async def _emit(self, event: str, fields: Mapping[str, Any]) -> None:
        """Report to the sink off the loop, one event at a time."""
        if isinstance(self.sink, NullSink):
            return

        def emit() -> None:
            with self._emit_lock:
                self.sink.emit(event, fields)

        await asyncio.to_thread(emit)

def _request(span: Sequence[Mapping[str, Any]], f: Format, prev: str | None, budget: int,
             counter: TokenCounter, session_id: str | None, context: str,
             usage: list[dict[str, Any]], checkpoint: Mapping[str, Any] | None,
             ordinals: Sequence[int | None], out: dict[str, Any]) -> SummaryRequest:
    """The summary request; the checkpoint fields are passed when the request has them."""
    kw: dict[str, Any] = {"session_id": session_id, "context": context, "usage": usage}
    fields = getattr(SummaryRequest, "__dataclass_fields__", {})
    if "checkpoint" in fields:
        kw.update(checkpoint=checkpoint, ordinals=tuple(ordinals), out=out)
    return SummaryRequest(span, f, prev, budget, counter, **kw)


def _key(session_id: str | None) -> str:
    """The session key: ``None`` is the default session."""
    return "default" if session_id is None else session_id


#: Messages at the end of the last call whose content (not only their identity) is
#: compared on the next call: an agent that rewrites a message in place (appends a block
#: to its last user turn, edits the text of a recent one) is recounted. Older messages
#: are compared by identity (one C pointer test each), which keeps a call O(new
#: messages); rewrite an older message as a new dict (``{**m, "content": ...}``) and it
#: is recounted too. A change of ``cache_control`` markers only is not a rewrite.
INPLACE_CHECK = 32


def _snapshot(value: Any) -> Any:
    """A copy of a message for the content check: dicts and lists copied all the way
    down, everything else (strings, numbers: immutable) shared, so comparing an unchanged
    message with it stays fast (its strings are the same objects)."""
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    return value


def _without_cache_control(value: Any) -> Any:
    """``value`` with every ``cache_control`` key left out (dicts and lists rebuilt)."""
    if isinstance(value, dict):
        return {k: _without_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_without_cache_control(v) for v in value]
    return value


def _tail_unchanged(window: Sequence[Mapping[str, Any]], copies: list[Any]) -> bool:
    """Whether each message of ``window`` still has the content of its copy. A message
    whose only change is a ``cache_control`` marker counts as unchanged (its copy is
    refreshed): agents move the prompt-cache breakpoint onto the newest message in place
    on every call, and the marker is no content (it counts no tokens)."""
    if list(window) == copies:               # C-speed, the common case
        return True
    for j, (m, c) in enumerate(zip(window, copies)):
        if m != c:
            if _without_cache_control(m) != _without_cache_control(c):
                return False
            copies[j] = _snapshot(m)
    return True


def _tail_copy(msgs: Sequence[Mapping[str, Any]]) -> list[Any]:
    """:func:`_snapshot` of the last :data:`INPLACE_CHECK` messages of ``msgs``."""
    return [_snapshot(m) for m in msgs[max(0, len(msgs) - INPLACE_CHECK):]]


def _hash_all(msgs: Sequence[Mapping[str, Any]], first: int = 0) -> list[str]:
    """Content hashes of messages (``first``: index of ``msgs[0]`` in the call, for errors).

    Raises:
        InvalidHistoryError: a message is not JSON-serialisable (its index named).
    """
    out = []
    for i, m in enumerate(msgs, first):
        try:
            out.append(content_hash(m))
        except (TypeError, ValueError) as e:
            raise InvalidHistoryError(f"messages[{i}] is not JSON-serialisable ({e}); fix: send "
                                      "plain dicts, lists, strings and numbers",
                                      index=i, rule="not_json") from None
    return out


def _summary_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping))
    return str(content or "").replace(SUMMARY_OPEN, "").replace(SUMMARY_CLOSE, "").strip()


__all__ = ["CompactionResult", "CompactorInvariantError", "MessageCompactor", "SessionState",
           "content_hash", "missing", "summary_message", "price_usage", "DEFAULT_PRICES"]
