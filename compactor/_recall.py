"""Question-time recall: archived spans relevant to the newest user turn, put back into the
request in a bounded, marked block that never invalidates the prompt cache.

Three pieces, each usable alone:

* :class:`RecallIndex` -- a lexical index (SQLite FTS5, BM25 ranking, Porter stemming) of
  a session's archived messages, kept beside the store (``<store root>/recall.sqlite3``,
  0600; in memory for a store without a ``root``). It is derived data: built and updated
  incrementally from the store's public methods (the current branch's records), keyed by
  chain id, so indexing is idempotent, follows branches, and several processes indexing
  one session converge (SQLite's own locking, WAL, a busy timeout).
* :func:`retrieve` -- the archived messages most relevant to a query, expanded to whole
  units (:func:`compactor._units.group_units`: a ``tool_use`` travels with its
  ``tool_result``), without what is already in the context, deduplicated, in ordinal
  order, rendered as one text block of at most ``budget_tokens`` tokens: a
  :class:`RecallBlock`.
* :func:`place_recall` -- the request's messages with the block placed after the cached
  prefix, next to the newest user turn (Anthropic: a text block appended to the last user
  message; OpenAI: a user message just before the newest user turn, or after the tool
  results of a loop in progress), provider-valid. It is pure: the history the session
  engine sees is never changed, only what is sent.

:func:`with_recall` is the driver hook: given a compactor with a store and the result of
``compact_if_needed``, it refreshes the index off the event loop, retrieves with the
newest user turn as the query and returns the messages to send.

Everything is deterministic: no set or dict iteration order reaches the output, ties
are broken by ordinal, so the same archive and query give the same bytes under any
``PYTHONHASHSEED``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ._format import (RESPONSES_ITEMS, Format, blocks, detect_format, is_summary, role_of,
                      text_of, tool_result_text)
from ._store import branch_records, canonical_json, chain_id, content_hash
from ._tokens import MESSAGE_OVERHEAD, TokenCounter
from ._units import group_units

#: Opening tag of a recall block (followed by `` archive_refs="..."``) and closing tag.
RECALL_OPEN = "<recalled_context"
RECALL_CLOSE = "</recalled_context>"
#: File name of the index under the store's root.
INDEX_FILE = "recall.sqlite3"
#: Default share of the usable window a recall block may take (``docs/recall.md``: at 10%
#: of a 25% window, LoCoMo answers in what is sent go from 51% to 86% of the ceiling).
DEFAULT_RECALL_SHARE = 0.1
#: Units taken right after each hit by :func:`with_recall` (the reply to a statement, the
#: outcome of a step): on LoCoMo at a 10% budget it holds 270 answers instead of 258
#: (``docs/recall.md``).
DEFAULT_FOLLOW = 1
#: At most this many query terms are looked up (the first ones of the newest user turn).
MAX_QUERY_TERMS = 64
#: Messages fetched from the index per retrieval before unit expansion and budgeting.
CANDIDATES = 64
#: Shortest text kept of a message that is cut to fit the budget, in characters.
MIN_CUT_CHARS = 160
#: Stop adding units when less room than this is left, in tokens (no message fits).
MIN_ROOM = 16
#: Stop after this many candidate units did not fit the room left.
MAX_MISSES = 8
#: How long a writer waits for another process's index transaction, in seconds.
BUSY_TIMEOUT_S = 30.0

log = logging.getLogger("compactor")

_HEADER = ("Archived messages of this conversation relevant to the newest user turn, "
           "verbatim from the session archive ([N] = message ordinal); they are not "
           "otherwise in the context.")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class RecallBlock:
    """What :func:`retrieve` found.

    Attributes:
        text: the rendered block, ``<recalled_context archive_refs="...">...
            </recalled_context>`` ("" when nothing was recalled).
        ordinals: archived message ordinals it holds, ascending.
        tokens: ``counter.count(text)``, in tokens (at most the budget it was given).
        query: the query text it answers.
    """

    text: str
    ordinals: tuple[int, ...]
    tokens: int
    query: str

    def __bool__(self) -> bool:
        return bool(self.ordinals)

    @property
    def refs(self) -> str:
        """The ordinals as inclusive ranges, e.g. ``"12-14,30"``."""
        return format_refs(self.ordinals)


EMPTY = RecallBlock("", (), 0, "")


def format_refs(ordinals: Iterable[int]) -> str:
    """Ordinals as sorted inclusive ranges: ``[12, 13, 14, 30]`` -> ``"12-14,30"``."""
    out: list[list[int]] = []
    for o in sorted(set(ordinals)):
        if out and o == out[-1][1] + 1:
            out[-1][1] = o
        else:
            out.append([o, o])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in out)


# --------------------------------------------------------------------------- the index

_SCHEMA = """
create table if not exists meta(session text primary key, fts text not null,
                                length integer not null, tip text not null,
                                fmt text not null);
create table if not exists node(id integer primary key, session text not null,
                                chain text not null, ordinal integer not null,
                                hash text not null, message text not null,
                                unique(session, chain));
create table if not exists branch(session text not null, ordinal integer not null,
                                  node integer not null, unit integer not null,
                                  primary key(session, ordinal));
create index if not exists branch_node on branch(node);
create index if not exists branch_unit on branch(session, unit);
"""


class RecallIndex:
    """A lexical index of archived messages (SQLite FTS5, BM25; Porter stemming).

    One FTS table per session (so BM25's term statistics are the session's own); the
    ``node`` table holds each indexed archive node (by chain id, with its message), the
    ``branch`` table the current branch (ordinal -> node, and the ordinal its unit starts
    at), ``meta`` the indexed length and tip of each session.

    Args:
        path: the SQLite file (created 0600); None: an in-memory index for this object.

    Thread-safe (one connection behind a lock); safe across processes (SQLite locking,
    WAL journal, writers wait up to :data:`BUSY_TIMEOUT_S` seconds).

    Raises:
        sqlite3.OperationalError: the file cannot be opened, or this SQLite lacks FTS5.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None and not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path),
                                   timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        self._mu = threading.Lock()
        #: nodes written to the FTS tables by this object (tests observe increments)
        self.indexed_total = 0
        with self._mu:
            self._db.execute(f"pragma busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            if self.path is not None:
                self._wal()
            self._db.execute("begin immediate")
            try:
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def _wal(self) -> None:
        """Switch the file to the WAL journal. SQLite answers "database is locked" at once,
        without its busy handler, when another process opens the same new file at that
        moment: retry (tenacity) up to :data:`BUSY_TIMEOUT_S` seconds."""
        from tenacity import (Retrying, retry_if_exception, stop_after_delay,
                              wait_random_exponential)

        for attempt in Retrying(
                retry=retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError)
                                         and "locked" in str(e)),
                stop=stop_after_delay(BUSY_TIMEOUT_S), wait=wait_random_exponential(0.01, 0.5),
                reraise=True):
            with attempt:
                self._db.execute("pragma journal_mode=wal")

    # ------------------------------------------------------------------ lifecycle
    _shared: "dict[Path, RecallIndex]" = {}
    _memory: "weakref.WeakKeyDictionary[Any, RecallIndex]" = weakref.WeakKeyDictionary()
    _shared_mu = threading.Lock()

    @classmethod
    def for_store(cls, store: Any) -> "RecallIndex":
        """The index of a store: ``<store.root>/recall.sqlite3`` (one object per file in
        this process), or an in-memory one kept with the store object when it has no
        ``root``."""
        root = getattr(store, "root", None)
        with cls._shared_mu:
            if root is not None:
                p = (Path(root) / INDEX_FILE).resolve()
                ix = cls._shared.get(p)
                if ix is None:
                    ix = cls._shared[p] = cls(p)
                return ix
            ix = cls._memory.get(store)
            if ix is None:
                ix = cls(None)
                cls._memory[store] = ix
            return ix

    def close(self) -> None:
        """Close the connection (the object is unusable afterwards)."""
        with self._mu:
            self._db.close()
        with RecallIndex._shared_mu:
            for k, v in list(RecallIndex._shared.items()):
                if v is self:
                    del RecallIndex._shared[k]

    # ------------------------------------------------------------------ updating
    def update(self, store: Any, session_id: str, *, fmt: Format | None = None,
               chains: Sequence[str] | None = None) -> int:
        """Index what the store archived on the session's current branch since the last
        update: only ordinals past the indexed length when the branch only grew; from
        the fork point when it moved to another branch. Idempotent.

        Args:
            store: a session store (``records`` + :func:`branch_records` when it has them,
                else ``branch_hashes`` + ``restore``).
            session_id: the session.
            fmt: the wire format (default: detected from the archived messages).
            chains: the chain ids of the branch the caller knows (the session state's);
                when the index already ends at the same tip, the store is not read.

        Returns:
            How many archive nodes were newly indexed.

        Raises:
            sqlite3.OperationalError: another process held the index for longer than
                :data:`BUSY_TIMEOUT_S` seconds.
        """
        if chains is not None:
            with self._mu:
                row = self._db.execute("select length, tip from meta where session=?",
                                       (session_id,)).fetchone()
            if row is not None and row[0] == len(chains) and (
                    not chains or row[1] == chains[-1]):
                return 0
        recs = _branch_of(store, session_id)
        if not recs:
            return 0
        f = fmt or detect_format([m for _, _, _, m in recs])
        with self._mu:
            db = self._db
            db.execute("begin immediate")
            try:
                n = self._update_locked(session_id, recs, f)
                db.execute("commit")
            except BaseException:
                db.execute("rollback")
                raise
            self.indexed_total += n
            return n

    def _update_locked(self, sid: str, recs: list[tuple[int, str, str, Mapping[str, Any]]],
                       f: Format) -> int:
        db = self._db
        row = db.execute("select fts, length, tip, fmt from meta where session=?",
                         (sid,)).fetchone()
        if row is None:
            fts = "fts_" + hashlib.sha256(sid.encode("utf-8")).hexdigest()[:24]
            db.execute(f"create virtual table if not exists {fts} using fts5(body, "
                       "tokenize='porter unicode61 remove_diacritics 2')")
            db.execute("insert into meta values (?, ?, 0, '', ?)", (sid, fts, f.value))
            length, tip = 0, ""
        else:
            fts, length, tip = row[0], int(row[1]), str(row[2])
            f = Format(row[3])
        n = len(recs)
        chains = [c for _, _, c, _ in recs]
        if length and n >= length and chains[length - 1] == tip:
            keep = length                            # the branch only grew
        elif length and n < length and db.execute(
                "select n.chain from branch b join node n on n.id=b.node "
                "where b.session=? and b.ordinal=?", (sid, n - 1)).fetchone() == (chains[-1],):
            return 0                                 # a reader behind the index: keep it
        else:
            stored = dict(db.execute(
                "select b.ordinal, n.chain from branch b join node n on n.id=b.node "
                "where b.session=?", (sid,)).fetchall())
            keep = 0
            while keep < min(n, length) and stored.get(keep) == chains[keep]:
                keep += 1
        if keep == n and length == n:
            return 0
        return self._write(sid, fts, f, keep, recs[keep:])

    def _write(self, sid: str, fts: str, f: Format, keep: int,
               tail: Sequence[tuple[int, str, str, Mapping[str, Any]]]) -> int:
        """Make ``tail`` (ordinals ``keep``, ``keep + 1``...) the branch after ordinal
        ``keep - 1``: index its new nodes, regroup units from where the unit holding
        ``keep - 1`` starts, and move the tip. Returns the nodes newly indexed."""
        db = self._db
        db.execute("delete from branch where session=? and ordinal>=?", (sid, keep))
        # units are recomputed from where the last indexed unit starts (it may grow)
        start = keep
        if keep:
            u = db.execute("select unit from branch where session=? and ordinal=?",
                           (sid, keep - 1)).fetchone()
            start = int(u[0]) if u else keep
        before = [json.loads(m) for (m,) in db.execute(
            "select n.message from branch b join node n on n.id=b.node where b.session=? "
            "and b.ordinal>=? and b.ordinal<? order by b.ordinal", (sid, start, keep))]
        new = 0
        ids: dict[int, int] = {}
        for o, h, c, m in tail:
            cur = db.execute("insert or ignore into node(session, chain, ordinal, hash, "
                             "message) values (?, ?, ?, ?, ?)",
                             (sid, c, o, h, canonical_json(m)))
            if cur.rowcount == 1:
                nid = int(cur.lastrowid)
                db.execute(f"insert into {fts}(rowid, body) values (?, ?)",
                           (nid, index_text(m)))
                new += 1
            else:
                nid = int(db.execute("select id from node where session=? and chain=?",
                                     (sid, c)).fetchone()[0])
            ids[o] = nid
        msgs = before + [m for _, _, _, m in tail]
        # a placeholder first message makes the grouping of a suffix equal to the
        # grouping of the whole history (no leading system/summary unit at ``start``)
        lead = [{"role": "user", "content": "."}] if start else []
        for u in group_units(lead + msgs, f):
            a, b = u.start - len(lead) + start, u.end - len(lead) + start
            for o in range(max(a, start), b):
                if o < keep:
                    db.execute("update branch set unit=? where session=? and ordinal=?",
                               (a, sid, o))
                else:
                    db.execute("insert into branch values (?, ?, ?, ?)", (sid, o, ids[o], a))
        n = keep + len(tail)
        db.execute("update meta set length=?, tip=? where session=?", (n, tail[-1][2], sid))
        return new

    def add(self, store: Any, session_id: str, nodes: Sequence[Any], *,
            fmt: Format | None = None) -> int:
        """Index nodes the caller has just archived (``ArchiveNode``-like: ``position``,
        ``hash``, ``prev``, ``message``), without reading the archive, when they continue
        the indexed branch (the first one's ``prev`` is the indexed tip); otherwise fall
        back to :meth:`update` (reads the store). O(new nodes) on the hot path.

        Returns:
            How many archive nodes were newly indexed.
        """
        if not nodes:
            return 0
        tail = []
        for n in nodes:
            h, prev = str(n.hash), str(n.prev)
            tail.append((int(n.position), h, chain_id(prev, h), n.message))
        ok = all(tail[i + 1][0] == tail[i][0] + 1 and str(nodes[i + 1].prev) == tail[i][2]
                 for i in range(len(tail) - 1))
        f = fmt or detect_format([m for _, _, _, m in tail])
        if ok:
            with self._mu:
                db = self._db
                db.execute("begin immediate")
                try:
                    row = db.execute("select fts, length, tip, fmt from meta where session=?",
                                     (session_id,)).fetchone()
                    if row is not None and int(row[1]) == tail[0][0] and \
                            str(row[2]) == str(nodes[0].prev) and tail[0][0] > 0:
                        n = self._write(session_id, row[0], Format(row[3]), tail[0][0], tail)
                        db.execute("commit")
                        self.indexed_total += n
                        return n
                    db.execute("rollback")
                except BaseException:
                    db.execute("rollback")
                    raise
        return self.update(store, session_id, fmt=fmt)

    def drop(self, session_id: str) -> None:
        """Forget a session (maintenance deletes or archives it)."""
        with self._mu:
            db = self._db
            db.execute("begin immediate")
            try:
                row = db.execute("select fts from meta where session=?",
                                 (session_id,)).fetchone()
                if row is not None:
                    db.execute(f"drop table if exists {row[0]}")
                for t in ("meta", "node", "branch"):
                    db.execute(f"delete from {t} where session=?", (session_id,))
                db.execute("commit")
            except BaseException:
                db.execute("rollback")
                raise

    # ------------------------------------------------------------------ reading
    def indexed(self, session_id: str) -> tuple[int, int]:
        """``(branch length indexed, archive nodes indexed)`` of a session."""
        with self._mu:
            row = self._db.execute("select length from meta where session=?",
                                   (session_id,)).fetchone()
            nodes = self._db.execute("select count(*) from node where session=?",
                                     (session_id,)).fetchone()[0]
        return (int(row[0]) if row else 0), int(nodes)

    def search(self, session_id: str, query: str, *, limit: int = CANDIDATES,
               max_df: float = 1.0) -> list[tuple[int, float]]:
        """``(ordinal, score)`` of the current branch's messages matching any query term,
        best first (BM25; lower score is better; ties by ordinal). At most ``limit``.

        ``max_df``: only query terms found in at most this share of the session's indexed
        messages are looked up (1.0: all); no such term, no match -- a query made only of
        words every message has recalls nothing."""
        terms = query_terms(query)
        if not terms:
            return []
        quoted = ['"' + t.replace('"', '""') + '"' for t in terms]
        with self._mu:
            row = self._db.execute("select fts from meta where session=?",
                                   (session_id,)).fetchone()
            if row is None:
                return []
            fts = row[0]
            if max_df < 1.0:
                docs = self._db.execute(f"select count(*) from {fts}").fetchone()[0]
                quoted = [q for q in quoted if self._db.execute(
                    f"select count(*) from {fts} where {fts} match ?", (q,)
                ).fetchone()[0] <= max_df * docs]
                if not quoted:
                    return []
            expr = " OR ".join(quoted)
            rows = self._db.execute(
                f"select b.ordinal, bm25({fts}) as s from {fts} "
                f"join branch b on b.node = {fts}.rowid and b.session=? "
                f"where {fts} match ? order by s, b.ordinal limit ?",
                (session_id, expr, int(limit))).fetchall()
        return [(int(o), float(s)) for o, s in rows]

    def span(self, session_id: str, ordinal: int) -> list[tuple[int, dict[str, Any]]]:
        """The unit holding ``ordinal`` on the current branch: ``(ordinal, message)``
        pairs, in order."""
        with self._mu:
            row = self._db.execute("select unit from branch where session=? and ordinal=?",
                                   (session_id, ordinal)).fetchone()
            if row is None:
                return []
            start = int(row[0])
            rows = self._db.execute(
                "select b.ordinal, n.message from branch b join node n on n.id=b.node "
                "where b.session=? and b.unit=? order by b.ordinal",
                (session_id, start)).fetchall()
        return [(int(o), json.loads(m)) for o, m in rows]

    def branch_hashes(self, session_id: str) -> list[str]:
        """Content hashes of the indexed current branch, by ordinal."""
        with self._mu:
            rows = self._db.execute(
                "select n.hash from branch b join node n on n.id=b.node where b.session=? "
                "order by b.ordinal", (session_id,)).fetchall()
        return [str(h) for (h,) in rows]


def _branch_of(store: Any, session_id: str) -> list[tuple[int, str, str, Mapping[str, Any]]]:
    """``(ordinal, hash, chain id, message)`` of the store's current branch, through its
    public methods: ``records`` (one read) when it has it, else ``branch_hashes`` and
    ``restore``."""
    if hasattr(store, "exists") and not store.exists(session_id):
        return []
    records = getattr(store, "records", None)
    if callable(records):
        out = []
        for r in branch_records(list(records(session_id))):
            h, prev = str(r["hash"]), str(r["prev"])
            out.append((int(r["ordinal"]), h, chain_id(prev, h), r["message"]))
        return out
    hashes = list(store.branch_hashes(session_id))
    msgs = store.restore(session_id)
    out, prev = [], ""
    for o, (h, m) in enumerate(zip(hashes, msgs)):
        prev = chain_id(prev, h)
        out.append((o, h, prev, m))
    return out


# --------------------------------------------------------------------------- text

def query_terms(text: str) -> list[str]:
    """The distinct lower-case words of ``text`` (letters/digits/underscore runs of at
    least 2 characters, or a digit), in first-seen order, at most
    :data:`MAX_QUERY_TERMS`."""
    out: list[str] = []
    seen: set[str] = set()
    for w in _WORD.findall(text.lower()):
        if (len(w) < 2 and not w.isdigit()) or w in seen:
            continue
        seen.add(w)
        out.append(w)
        if len(out) >= MAX_QUERY_TERMS:
            break
    return out


def index_text(message: Mapping[str, Any]) -> str:
    """The text of a message that is indexed: what :func:`render_message` shows."""
    return "\n".join(t for _, t in _parts(message))


def _parts(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, text)`` of each readable part of a message (thinking left out: it is
    the model's private scratch and costly)."""
    out: list[tuple[str, str]] = []
    role = str(m.get("role"))
    t0 = m.get("type")
    if t0 in RESPONSES_ITEMS and t0 != "message":      # a Responses item
        if t0 == "reasoning" or t0 == "compaction":
            return []                                   # private scratch / opaque
        cid = m.get("call_id")
        label = (f"tool_call {m.get('name')} id={cid}" if t0 in ("function_call",
                                                                 "custom_tool_call")
                 else f"tool_result for id={cid}" if cid is not None else str(t0))
        text = str(m.get("arguments", m.get("input", ""))) if t0 in (
            "function_call", "custom_tool_call") else text_of(m)
        return [(label, text)] if text or label else []
    for b in blocks(m):
        t = b.get("type")
        if t in ("text", "input_text", "output_text"):
            out.append(("", str(b.get("text", ""))))
        elif t == "tool_use":
            out.append((f"tool_use {b.get('name')} id={b.get('id')}",
                        json.dumps(b.get("input", {}), ensure_ascii=False, sort_keys=True)))
        elif t == "tool_result":
            out.append((f"tool_result for id={b.get('tool_use_id')}", tool_result_text(b)))
        elif t in ("image", "image_url"):
            out.append(("", "[image]"))
    for c in m.get("tool_calls") or []:
        if isinstance(c, Mapping):
            fn = c.get("function") if isinstance(c.get("function"), Mapping) else {}
            out.append((f"tool_call {fn.get('name')} id={c.get('id')}",
                        str(fn.get("arguments", ""))))
    if role == "tool":
        out = [(f"tool_result for id={m.get('tool_call_id')}", t) for _, t in out]
    return [(lab, txt) for lab, txt in out if txt or lab]


def _cut(text: str, cap: int, terms: Sequence[str]) -> str:
    """``text`` shortened to about ``cap`` characters around the first query term it holds
    (its head when none), the cut parts marked."""
    if len(text) <= cap:
        return text
    low = text.lower()
    hits = [i for i in (low.find(t) for t in terms) if i >= 0]
    at = min(hits) if hits else 0
    a = max(0, min(at - cap // 3, len(text) - cap))
    b = a + cap
    return ("[...] " if a else "") + text[a:b] + (f" [... {len(text) - b} chars cut]"
                                                  if b < len(text) else "")


def render_message(ordinal: int, m: Mapping[str, Any], *, cap: int | None = None,
                   terms: Sequence[str] = ()) -> str:
    """One archived message as recall text: ``[ordinal] role: text``, tool calls and
    results labelled with their ids; each part cut to ``cap`` characters when given."""
    lines = []
    for lab, txt in _parts(m):
        txt = txt if cap is None else _cut(txt, cap, terms)
        lines.append(f"({lab}) {txt}" if lab else txt)
    body = "\n".join(lines).replace(RECALL_CLOSE, "</recalled_context_>")
    return f"[{ordinal}] {m.get('role') or m.get('type')}: {body}"


def _render(units: Sequence[Sequence[tuple[int, Mapping[str, Any], int | None]]],
            terms: Sequence[str]) -> str:
    ords = [o for u in units for o, _, _ in u]
    body = "".join(_unit_text(u, terms) + "\n" for u in units)
    return f'{RECALL_OPEN} archive_refs="{format_refs(ords)}">\n{_HEADER}\n{body}{RECALL_CLOSE}'


# --------------------------------------------------------------------------- retrieval

def retrieve(store: Any, session_id: str, query_text: str, *,
             exclude_ordinals: Iterable[int] = (), budget_tokens: int,
             counter: TokenCounter, fmt: Format | None = None,
             index: RecallIndex | None = None, update: bool = True,
             max_units: int = 16,
             ranking: Sequence[tuple[int, float]] | None = None,
             max_df: float = 1.0, follow: int = 0) -> RecallBlock:
    """The archived messages most relevant to ``query_text``, as one recall block.

    Messages matching any query term are ranked by BM25 (best first); each is expanded
    to its whole unit (an assistant turn with its tool results; see
    :func:`compactor._units.group_units`), units all of whose messages are in
    ``exclude_ordinals`` are skipped, the rest are added best first while the block fits
    ``budget_tokens`` (a unit too large is added with its messages cut around the query
    terms, each to at least :data:`MIN_CUT_CHARS` characters, when that fits), at most
    ``max_units``; the block lists them in ordinal order.

    Blocking (SQLite and the store's files): call it in a thread from async code.

    Args:
        store: the session store.
        session_id: the session.
        query_text: the query (the newest user turn's text).
        exclude_ordinals: ordinals already in the context, verbatim.
        budget_tokens: the most tokens the block's text may take (``counter.count``).
        counter: the token counter.
        fmt: the wire format (default: detected from the archive).
        index: the index (default: :meth:`RecallIndex.for_store`).
        update: bring the index up to date first.
        max_units: at most this many units.
        ranking: ``(ordinal, score)`` best first from another ranker (e.g. embeddings);
            default: the index's BM25 :meth:`RecallIndex.search`.
        max_df: look up only query terms in at most this share of the session's
            messages (see :meth:`RecallIndex.search`; 1.0: every term).
        follow: also take this many units right after each hit (the answer to a
            question, the outcome of a step), when they are not in the context.

    Returns:
        The block (falsy, with empty text, when nothing relevant fits).
    """
    ix = index or RecallIndex.for_store(store)
    if update:
        ix.update(store, session_id, fmt=fmt)
    if budget_tokens <= 0 or not query_text.strip():
        return RecallBlock("", (), 0, query_text)
    terms = query_terms(query_text)
    excluded = set(exclude_ordinals)
    hits = ix.search(session_id, query_text, limit=CANDIDATES, max_df=max_df) \
        if ranking is None else list(ranking)
    Unit = list[tuple[int, Mapping[str, Any], int | None]]
    chosen: list[tuple[Unit, int]] = []        # (unit, its tokens), best first
    taken: set[int] = set()
    frame = counter.count(_render([], terms))
    used = frame
    misses = 0
    for o, _score in hits:
        if len(chosen) >= max_units or budget_tokens - used < MIN_ROOM or misses >= MAX_MISSES:
            break
        if o in taken or o in excluded:
            continue
        unit = ix.span(session_id, o)
        if not unit or all(u in excluded for u, _ in unit):
            continue
        for _ in range(follow):               # the units right after it (the reply)
            nxt = ix.span(session_id, unit[-1][0] + 1)
            if not nxt or any(u in taken or u in excluded for u, _ in nxt):
                break
            unit = unit + nxt
        taken.update(u for u, _ in unit)
        fitted = _fit([(u, m, None) for u, m in unit], budget_tokens - used, counter, terms)
        if fitted is not None:
            chosen.append(fitted)
            used += fitted[1]
        else:
            misses += 1
    # token counts of separate pieces may differ from the count of the joined text by a
    # few tokens: drop the lowest-ranked units until the exact count fits
    while chosen:
        units = sorted((u for u, _ in chosen), key=lambda u: u[0][0])
        text = _render(units, terms)
        tokens = counter.count(text)
        if tokens <= budget_tokens:
            return RecallBlock(text, tuple(o for u in units for o, _, _ in u), tokens,
                               query_text)
        chosen.pop()
    return RecallBlock("", (), 0, query_text)


def _unit_text(unit: Sequence[tuple[int, Mapping[str, Any], int | None]],
               terms: Sequence[str]) -> str:
    return "\n".join(render_message(o, m, cap=c, terms=terms) for o, m, c in unit)


def _fit(unit: list[tuple[int, Mapping[str, Any], int | None]], room: int,
         counter: TokenCounter, terms: Sequence[str]
         ) -> tuple[list[tuple[int, Mapping[str, Any], int | None]], int] | None:
    """``(unit, tokens)`` as the unit fits in ``room`` tokens (its text plus a line
    break and its archive refs): whole, else with each message cut to a common character
    cap (shrunk until it fits, never below :data:`MIN_CUT_CHARS`); None when it does not
    fit."""
    extra = 1 + counter.count(format_refs(o for o, _, _ in unit) + ",")   # line break, refs
    n = counter.count(_unit_text(unit, terms)) + extra
    if n <= room:
        return unit, n
    longest = max(len(t) for _, m, _ in unit for _, t in _parts(m)) if unit else 0
    cap = longest
    for _ in range(4):           # aim at the room directly, then shrink: a few counts
        cap = min(cap * 4 // 5, int(cap * room / max(n, 1)))
        if cap < MIN_CUT_CHARS:
            return None
        cut = [(o, m, cap) for o, m, _ in unit]
        n = counter.count(_unit_text(cut, terms)) + extra
        if n <= room:
            return cut, n
    return None


# --------------------------------------------------------------------------- placement

def newest_user_text(messages: Sequence[Mapping[str, Any]], fmt: Format) -> str:
    """The text of the newest user turn (the last user message with text of its own:
    tool results, summaries and recall blocks are not user turns); "" when none."""
    for m in reversed(messages):
        if m.get("role") != "user" or is_summary(m, fmt):
            continue
        texts = [str(b.get("text", "")) for b in blocks(m)
                 if b.get("type") in ("text", "input_text")
                 and not str(b.get("text", "")).startswith(RECALL_OPEN)]
        text = "\n".join(t for t in texts if t.strip())
        if text:
            return text
    return ""


def recall_message(block: RecallBlock, fmt: Format) -> dict[str, Any]:
    """The block as a message of its own: a ``user`` message (Anthropic: one text block;
    OpenAI: string content; Responses: a ``message`` item with one ``input_text``)."""
    if fmt is Format.RESPONSES:
        return {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": block.text}]}
    if fmt is Format.ANTHROPIC:
        return {"role": "user", "content": [{"type": "text", "text": block.text}]}
    return {"role": "user", "content": block.text}


def place_recall(work: Sequence[Mapping[str, Any]], fmt: Format,
                 block: RecallBlock) -> list[Mapping[str, Any]]:
    """The messages to send: ``work`` with the block placed after the cached prefix.

    * Anthropic: appended as the last text block of the newest user message (a copy of
      that message; a string content becomes one text block first), so roles still
      alternate and every block before it -- where a client's cache breakpoint goes --
      is unchanged.
    * OpenAI and Responses: a user message just before the last message when that is a
      user message, else (a tool loop in progress, the last message a tool result or a
      call's output item) after it.

    Every other message is the same object. Pure; ``work`` is not changed. An empty block
    or a history with no user message gives ``list(work)``.
    """
    out = list(work)
    if not block or not out:
        return out
    if fmt is Format.ANTHROPIC:
        for i in range(len(out) - 1, -1, -1):
            m = out[i]
            if m.get("role") != "user" or is_summary(m, fmt):
                continue
            content = m.get("content")
            prior = ([{"type": "text", "text": content}] if isinstance(content, str)
                     else list(content or []))
            out[i] = {**m, "content": prior + [{"type": "text", "text": block.text}]}
            return out
        return out
    last = role_of(out[-1], fmt)
    if last == "user":
        out.insert(len(out) - 1, recall_message(block, fmt))
    elif last == "tool":
        out.append(recall_message(block, fmt))
    return out


def ordinals_in_context(branch_hashes: Sequence[str],
                        messages: Sequence[Mapping[str, Any]]) -> set[int]:
    """Ordinals whose archived message is in ``messages`` verbatim (by content hash):
    what recall must not repeat. A cleared or shortened message is not verbatim, so its
    original can be recalled."""
    present = {content_hash(m) for m in messages}
    return {o for o, h in enumerate(branch_hashes) if h in present}


# --------------------------------------------------------------------------- the hook

@dataclass(frozen=True)
class RecallResult:
    """What :func:`with_recall` gives: ``messages`` to send (the result's history with
    the block placed) and the ``block`` (falsy when nothing was recalled)."""

    messages: list[Mapping[str, Any]]
    block: RecallBlock


async def with_recall(compactor: Any, result: Any, *, session_id: str | None,
                      share: float = DEFAULT_RECALL_SHARE,
                      index: RecallIndex | None = None, max_df: float = 1.0,
                      chains: Sequence[str] | None = None,
                      exclude_ordinals: Iterable[int] | None = None,
                      follow: int = DEFAULT_FOLLOW) -> RecallResult:
    """The driver hook: after ``result = await compactor.compact_if_needed(...)``,
    recall archived spans relevant to the newest user turn into what is sent.

    The recall budget is ``share`` of the usable window, and never more than the room the
    result leaves (``result.window - result.tokens_after``, less one message's framing).
    Index update, hashing and retrieval run in a thread, off the event loop. Without a
    store, with ``share <= 0``, or with no room, the result's messages are returned as
    they are, and so they are when the index cannot be used (a SQLite or OS error is
    logged on the ``compactor`` logger, never raised). The history the caller continues
    from stays ``result.messages``: the block is part of this request only.

    Args:
        compactor: a :class:`~compactor.MessageCompactor` (its ``store`` and ``counter``).
        result: the :class:`~compactor.CompactionResult` of this call.
        session_id: the call's session id (None: the default session).
        share: share of the usable window the block may take, in [0, 1].
        index: the recall index (default: the store's).
        max_df: see :func:`retrieve` (1.0: every query term is looked up).
        chains: the session state's chain ids (``SessionState.chains``): when the index
            is at that tip already (the driver fed it with :meth:`RecallIndex.add`), the
            archive is not read.
        exclude_ordinals: the ordinals whose original is in ``result.messages`` verbatim,
            when the caller knows them (the driver does: its view); default: found by
            hashing ``result.messages`` (:func:`ordinals_in_context`).
        follow: units taken right after each hit (see :func:`retrieve`).
    """
    store = getattr(compactor, "store", None)
    msgs = list(result.messages)
    if store is None or share <= 0:
        return RecallResult(msgs, EMPTY)
    room = int(result.window) - int(result.tokens_after) - MESSAGE_OVERHEAD
    budget = min(int(share * result.window), room)
    if budget <= 0:
        return RecallResult(msgs, EMPTY)
    sid = "default" if session_id is None else session_id
    fmt = result.fmt
    query = newest_user_text(msgs, fmt)
    if not query:
        return RecallResult(msgs, EMPTY)

    def run() -> RecallBlock:
        ix = index or RecallIndex.for_store(store)
        ix.update(store, sid, fmt=fmt, chains=chains)
        excluded = set(exclude_ordinals) if exclude_ordinals is not None else \
            ordinals_in_context(ix.branch_hashes(sid), msgs)
        return retrieve(store, sid, query, exclude_ordinals=excluded, budget_tokens=budget,
                        counter=compactor.counter, fmt=fmt, index=ix, update=False,
                        max_df=max_df, follow=follow)

    try:
        block = await asyncio.to_thread(run)
    except (sqlite3.Error, OSError) as e:
        # recall is an addition: an index that cannot be opened or is locked for too long
        # never fails the agent's call (the index is derived and catches up next time)
        log.warning("session %s: recall skipped (%s: %s)", sid, type(e).__name__, e)
        return RecallResult(msgs, EMPTY)
    return RecallResult(place_recall(msgs, fmt, block), block)


__all__ = ["DEFAULT_FOLLOW", "DEFAULT_RECALL_SHARE", "INDEX_FILE", "RECALL_CLOSE",
           "RECALL_OPEN", "RecallBlock", "RecallIndex", "RecallResult", "format_refs",
           "newest_user_text",
           "ordinals_in_context", "place_recall", "recall_message", "render_message",
           "retrieve", "with_recall"]
