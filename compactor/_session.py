"""The per-session state machine: pure, no I/O, no awaiting.

Each call hands it the caller's history and the content hash of each message; it answers
which history to plan on (``work``), the original position (``ordinal``) of each of its
messages, and which messages are new to the archive. It never looks at Python object
identity: a history that was rebuilt, JSON round-tripped or sent by another process after
a restart resolves exactly as the same objects would.

How a call is read (``view`` is the compacted history the last compaction returned, as
``(ordinal, hash)`` pairs, ``None`` for the summary we inserted; ``origin`` is how many
original messages it covers; ``branch`` the hashes of the original history so far):

* **full** -- the caller passes its whole original history (a drop-in wrapper, a proxy):
  its first ``origin`` hashes equal ``branch[:origin]``. Work = the view's messages (taken
  from the call, the summary rebuilt from state) + the messages after ``origin``.
* **view** -- the caller continues from what the last call returned: its first
  ``len(view)`` hashes equal the view's. Work = the call; new messages follow ``origin``.
* **rewrite** -- neither: the agent changed its history. A full history that differs from
  ``branch`` (and holds no summary of ours) starts a new *branch* at the first
  difference: the compaction state is reset (its summary described messages that
  changed), the new messages are archived after the fork point, and the old branch stays
  in the archive. A view edited after our summary forks the same way after the last
  message it kept. A call that holds our summary but differs from the view before it
  cannot be placed in the original history: :class:`HistoryRewriteError`.

Our summary is recognised by the hash of the summary message we produced, kept in the
state -- never by its text: a user message that looks like a summary is the user's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ._errors import InvalidHistoryError
from ._store import chain_id, content_hash

Message = Mapping[str, Any]


class HistoryRewriteError(InvalidHistoryError):
    """The call holds the summary this session inserted, but the messages before it differ
    from what the last compaction returned: it cannot be placed in the original history.

    Fix: send the history the last call returned (``result.messages``) with new messages
    appended, or the agent's full original history.
    """

    def __init__(self, index: int) -> None:
        super().__init__(
            f"messages[{index}] differs from the compacted history this session returned, "
            "before the summary it inserted; fix: send the last result's messages with new "
            "messages appended, or your full original history", index=index,
            rule="rewritten_before_summary")


@dataclass
class SessionState:
    """A session's state: what a restarted process needs to resume it, and the current
    branch of its original history (loaded from the archive).

    Attributes:
        session_id: the session's id.
        version: the saved state's version (0: never saved); optimistic concurrency.
        branch: content hashes of the original history's current branch (position = ordinal).
        chains: chain ids of ``branch`` (``chains[i]`` names ``branch[:i + 1]``), kept
            only when ``chained`` (a store needs them; without one they are not computed).
        view: the last compacted history, ``(ordinal or None for our summary, hash)``.
        ours: the messages of ``view`` that are ours, by view index: the summary, and kept
            messages we changed (a shortened or cleared tool result). A full-history call
            carries the originals; these replace them.
        origin: how many original messages ``view`` covers.
        summary: the text of the summary we inserted (None before any compaction).
        summary_hash: the content hash of that summary message.
        checkpoint: the structured checkpoint behind the summary (JSON), if any.
        compaction_count / last_compaction_at: how many compactions, the last one's time
            (ISO 8601, UTC).
        archived_ranges: inclusive ordinal ranges that left the context.
    """

    session_id: str
    version: int = 0
    branch: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    chained: bool = True
    view: list[tuple[int | None, str]] = field(default_factory=list)
    ours: dict[int, dict[str, Any]] = field(default_factory=dict)
    origin: int = 0
    summary: str | None = None
    summary_hash: str | None = None
    checkpoint: dict[str, Any] | None = None
    compaction_count: int = 0
    last_compaction_at: str | None = None
    archived_ranges: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The persisted fields (``branch`` and ``chains`` are not: they are the archive's)."""
        return {"view": [[o, h] for o, h in self.view], "origin": self.origin,
                "ours": {str(k): v for k, v in self.ours.items()},
                "summary": self.summary, "summary_hash": self.summary_hash,
                "checkpoint": self.checkpoint, "compaction_count": self.compaction_count,
                "last_compaction_at": self.last_compaction_at,
                "archived_ranges": self.archived_ranges, "next_ordinal": len(self.branch)}

    @classmethod
    def from_json(cls, session_id: str, d: Mapping[str, Any] | None,
                  branch: Sequence[str]) -> "SessionState":
        """A state from its saved JSON (None: a new session) and the archive's branch
        hashes. A state of schema 1 (before content-addressed sessions) keeps its counts
        and summary; its view is dropped (the next call resolves as a full history)."""
        s = cls(session_id, branch=list(branch), chains=chains_of(branch))
        if not d:
            return s
        s.version = int(d.get("version", 0))
        s.summary = d.get("summary")
        s.compaction_count = int(d.get("compaction_count", 0))
        s.last_compaction_at = d.get("last_compaction_at")
        s.archived_ranges = [list(r) for r in d.get("archived_ranges", [])]
        s.checkpoint = d.get("checkpoint")
        if int(d.get("schema_version", 1)) >= 2 and d.get("summary_hash"):
            view = [(None if o is None else int(o), str(h)) for o, h in d.get("view", [])]
            ours = {int(k): dict(v) for k, v in (d.get("ours") or {}).items()}
            origin = int(d.get("origin", 0))
            if origin <= len(s.branch) and all(o is None or o < origin for o, _ in view):
                s.view, s.ours, s.origin = view, ours, origin
                s.summary_hash = d["summary_hash"]
        return s


@dataclass(slots=True)
class Resolution:
    """How one call is read (see the module docs).

    Attributes:
        mode: ``"full"`` (position = index in the call) or ``"view"`` (the call starts
            with a compacted view); a rewrite is one of them with ``fork`` or ``reset`` set.
        work: the history to plan on (the caller's objects, ours where the view has them).
        work_hashes: content hash of each message of ``work``.
        ordinals: original position of each message of ``work`` (None: our summary).
        offset: a message at index ``i >= start`` of the call has position ``i + offset``.
        start: index of the call's first message past the covered part.
        new: ``(position, hash, index into the call)`` of each message to archive, in order.
        fork: the position where a new branch starts (None: the branch only grew).
        keep: how much of the state's branch stays; the branch after this call is
            ``branch[:keep]`` + the hashes of ``new``.
        reset: the compaction state (view, summary, checkpoint) no longer applies.
        summary_index: index in ``work`` of our summary (None: none).
    """

    mode: str
    work: list[Message]
    work_hashes: list[str]
    ordinals: list[int | None]
    offset: int
    start: int
    new: list[tuple[int, str, int]]
    fork: int | None
    keep: int
    reset: bool
    summary_index: int | None


def resolve(s: SessionState, messages: Sequence[Message], hashes: Sequence[str], *,
            prev: Resolution | None = None, prev_len: int = 0,
            inplace: bool = False) -> Resolution:
    """Read one call against the session state. Pure unless ``inplace``: ``s`` is never
    changed.

    On the driver's hot path without a store, the hashes of the messages the call adds may
    be ``None`` (computed later, when needed: see ``MessageCompactor``); a new message's
    hash is then ``None`` in ``new`` too.

    Args:
        s: the session's state.
        messages: the caller's history.
        hashes: the content hash of each message.
        prev: the resolution of the call this one extends, when the driver knows that
            this call's first ``prev_len`` messages are that call's (a cheap comparison):
            only the messages after them are looked at, so the common case costs
            O(new messages). It must describe the state ``s`` is in.
        inplace: extend ``prev``'s lists instead of copying them (the driver's hot path;
            ``prev`` must not be used afterwards).

    Raises:
        HistoryRewriteError: see the module docs.
    """
    n = len(hashes)
    if prev is not None and prev_len <= n:
        mode, offset, start = prev.mode, prev.offset, prev_len
        if inplace:
            work, work_hashes, ordinals = prev.work, prev.work_hashes, prev.ordinals
        else:
            work, work_hashes, ordinals = list(prev.work), list(prev.work_hashes), list(prev.ordinals)
        work.extend(messages[prev_len:])
        work_hashes.extend(hashes[prev_len:])
        ordinals.extend(range(prev_len + offset, n + offset))
        summary_index = prev.summary_index
    else:
        view_h = [h for _, h in s.view]
        summary_index = next((i for i, (o, _) in enumerate(s.view) if o is None), None)
        if s.view and n >= len(view_h) and list(hashes[:len(view_h)]) == view_h:
            mode, start, offset = "view", len(view_h), s.origin - len(view_h)
            work, work_hashes = list(messages), list(hashes)
            ordinals = [o for o, _ in s.view] + list(range(s.origin, n + offset))
        elif (not s.view or s.summary_hash not in hashes) and n >= s.origin \
                and list(hashes[:s.origin]) == s.branch[:s.origin]:
            mode, start, offset = "full", s.origin, 0
            work = [s.ours[i] if i in s.ours else messages[o]  # type: ignore[index]
                    for i, (o, _) in enumerate(s.view)]
            work.extend(messages[s.origin:])
            work_hashes = view_h + list(hashes[s.origin:])
            ordinals = [o for o, _ in s.view] + list(range(s.origin, n))
        else:
            return _rewrite(s, messages, hashes)
    # the call's messages past the covered part: positions start + offset, ...
    known = s.branch
    new: list[tuple[int, str, int]] = []
    fork = None
    i = start
    while i < n and i + offset < len(known) and known[i + offset] == (
            hashes[i] if hashes[i] is not None else content_hash(messages[i])):
        i += 1                       # sent again: already archived
    if i < n:
        if i + offset < len(known):
            fork = i + offset
        new = [(j + offset, hashes[j], j) for j in range(i, n)]
    keep = new[0][0] if new else len(known)
    return Resolution(mode, work, work_hashes, ordinals, offset, start, new, fork, keep,
                      False, summary_index)


def _rewrite(s: SessionState, messages: Sequence[Message], hashes: Sequence[str]) -> Resolution:
    n = len(hashes)
    if s.view and s.summary_hash in hashes:
        # a compacted view edited after our summary: fork after the last message it kept
        view_h = [h for _, h in s.view]
        j = next(i for i, (o, _) in enumerate(s.view) if o is None)
        p = 0
        while p < min(n, len(view_h)) and hashes[p] == view_h[p]:
            p += 1
        if p <= j or hashes.index(s.summary_hash) != j:
            raise HistoryRewriteError(min(p, j))
        ordinals: list[int | None] = [o for o, _ in s.view[:p]]
        fork = max((o for o in ordinals if o is not None), default=-1) + 1
        if fork == 0:                 # only the summary was kept before the edit
            fork = next((o for o, _ in s.view[j + 1:] if o is not None), s.origin)
        new = [(fork + k, hashes[i], i) for k, i in enumerate(range(p, n))]
        ordinals.extend(pos for pos, _, _ in new)
        return Resolution("view", list(messages), list(hashes), ordinals, fork - p, p, new,
                          fork if new and fork < len(s.branch) else None,
                          fork if new else len(s.branch), False, j)
    # a full history that left the branch: fork at the first difference, state reset
    f = 0
    limit = min(n, len(s.branch))
    while f < limit and hashes[f] == s.branch[f]:
        f += 1
    new = [(i, hashes[i], i) for i in range(f, n)]
    fork = f if f < len(s.branch) and f < n else None
    return Resolution("full", list(messages), list(hashes), list(range(n)), 0, f, new, fork,
                      f if new else len(s.branch), True, None)


def nodes_for(s: SessionState, r: Resolution) -> list[tuple[int, str, str, int]]:
    """``(position, hash, prev chain id, index into the call)`` of each new message of a
    resolution, chained onto the state's current branch (pure)."""
    out = []
    prev = ""
    for pos, h, i in r.new:
        if not out:
            prev = s.chains[pos - 1] if pos > 0 else ""
        out.append((pos, h, prev, i))
        prev = chain_id(prev, h)
    return out


def chains_of(branch: Sequence[str]) -> list[str]:
    """The chain ids of a branch's hashes."""
    out: list[str] = []
    prev = ""
    for h in branch:
        prev = chain_id(prev, h)
        out.append(prev)
    return out


def commit(s: SessionState, r: Resolution) -> None:
    """Make a resolution the session's state (the driver calls it once the archive holds
    the new messages): the branch and its chain ids, and a reset when the history was
    rewritten."""
    if r.new:
        del s.branch[r.keep:]
        s.branch.extend(h for _, h, _ in r.new)
        if s.chained:
            del s.chains[r.keep:]
            prev = s.chains[-1] if s.chains else ""
            for _, h, _ in r.new:
                prev = chain_id(prev, h)
                s.chains.append(prev)
    if r.reset:
        s.view, s.ours, s.origin = [], {}, 0
        s.summary = s.summary_hash = s.checkpoint = None


def after_compaction(s: SessionState, r: Resolution, new_messages: Sequence[Message],
                     new_hashes: Sequence[str], kept: Sequence[int], summary_pos: int | None,
                     *, summary: str | None, evicted: Sequence[int], when: str,
                     checkpoint: Mapping[str, Any] | None) -> None:
    """Record a compaction in ``s`` (call after :func:`commit`): the new view (the kept
    messages keep their ordinals, the summary is ``None``; changed ones are kept in
    ``ours``), what it covers, the summary and its hash, the count and time, and the
    archived ranges.

    Args:
        r: the resolution the plan was made on.
        new_messages / new_hashes: the compacted history and each message's hash.
        kept: indices into ``r.work`` kept (verbatim or shortened), in order.
        summary_pos: index of the summary in ``new_messages`` (None: no summary).
        summary: the summary text.
        evicted: indices into ``r.work`` that left the context.
        when: ISO 8601 time of the compaction.
        checkpoint: the structured checkpoint the summarizer produced, if any.
    """
    view: list[tuple[int | None, str]] = []
    ours: dict[int, dict[str, Any]] = {}
    k = 0
    for i, (m, h) in enumerate(zip(new_messages, new_hashes)):
        if i == summary_pos:
            view.append((None, h))
            ours[i] = dict(m)
            continue
        o = r.ordinals[kept[k]]
        k += 1
        view.append((o, h))
        if o is None or o >= len(s.branch) or s.branch[o] != h:
            ours[i] = dict(m)
    s.view, s.ours = view, ours
    s.origin = max((o for o in r.ordinals if o is not None), default=-1) + 1
    s.summary = summary
    s.summary_hash = new_hashes[summary_pos] if summary_pos is not None else None
    if checkpoint is not None:
        s.checkpoint = dict(checkpoint)
    s.compaction_count += 1
    s.last_compaction_at = when
    s.archived_ranges = merge_ranges(
        s.archived_ranges, [o for o in (r.ordinals[i] for i in evicted) if o is not None])


def view_resolution(s: SessionState, work: Sequence[Message], mode: str,
                    call_len: int) -> Resolution:
    """The resolution the next call extends after a compaction: ``work`` (the compacted
    history) as a view of ``s``; for a full-history caller (``mode == "full"``) the
    next call's first ``call_len`` messages are the original history up to ``s.origin``."""
    hashes = [h for _, h in s.view]
    ordinals = [o for o, _ in s.view]
    summary_index = next((i for i, (o, _) in enumerate(s.view) if o is None), None)
    offset = 0 if mode == "full" else s.origin - len(s.view)
    return Resolution(mode, list(work), hashes, ordinals,
                      offset, call_len if mode == "full" else len(s.view), [], None,
                      len(s.branch), False, summary_index)


def merge_ranges(ranges: Sequence[Sequence[int]], ordinals: Sequence[int]) -> list[list[int]]:
    """Inclusive ordinal ranges covering ``ranges`` plus ``ordinals``, merged and sorted."""
    pts = sorted({o for a, b in ranges for o in range(a, b + 1)} | set(ordinals))
    out: list[list[int]] = []
    for o in pts:
        if out and o == out[-1][1] + 1:
            out[-1][1] = o
        else:
            out.append([o, o])
    return out
