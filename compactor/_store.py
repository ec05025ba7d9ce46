"""Session state and the lossless archive: nothing the compactor removes is ever lost.

A session's original history is a chain of messages named by their content, as git names
commits: each archived message is a *node* ``(position, hash, prev)`` where ``hash`` is the
message's :func:`content_hash` and ``prev`` the chain id of the node before it (``""`` at
position 0); the node's own chain id is :func:`chain_id` ``(prev, hash)``. Writing a node
that exists is a no-op, so appends are idempotent across tasks, processes and restarts,
and two writers of the same conversation converge to the same archive. An agent that
rewrites an earlier message starts a *branch*: new nodes whose ``prev`` is the fork point;
the archive keeps every branch, and :meth:`FileSessionStore.restore` returns the current
one (the branch of the most recent call), :meth:`FileSessionStore.branches` lists all.

:class:`SessionStoreProtocol` is what the compactor, the CLI, maintenance and the recall
tool use; :class:`FileSessionStore` (also exported as ``SessionStore``) is the embedded
default. Its layout under ``root`` (directories 0700, files 0600) is known to this module
alone::

    sessions/<name>/archive.jsonl          the active archive segment
    sessions/<name>/archive-0001.jsonl.gz  closed segments (gzip), read transparently
    sessions/<name>/state.json             session state, written by atomic replace
    sessions/<name>/id                     the full session id (hashed names only)
    sessions/<name>/IMPORTANT              marked important (:meth:`FileSessionStore.mark`)

``<name>`` is :func:`encode_session_id` of the id: reversible and collision-free.
An archive line is ``{"ordinal": N, "hash": "sha256:...", "prev": "<chain id>",
"message": {...}}`` (``ordinal`` = the position in the agent's original history), or
``{"tip": "<chain id>"}`` when the current branch moves to a node that already exists.
Lines without ``prev`` (store format 1) are read as one linear chain.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import (Any, ContextManager, Iterator, Mapping, Protocol, Sequence,
                    runtime_checkable)
from urllib.parse import quote, unquote

from filelock import FileLock

from ._errors import CompactorError, ConfigError
from ._format import text_of

STATE_SCHEMA_VERSION = 2
#: Longest encoded session id used as a folder name; longer ones are hashed.
MAX_NAME = 120
_SAFE = "-_.@+=:"          # kept as is by the encoding (letters and digits always are)
_HASHED = "!h-"            # '!' is always percent-encoded, so no plain name starts with it


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, compact separators, UTF-8 text (no ASCII escaping).

    Raises:
        TypeError: ``obj`` is not JSON-serialisable.
        ValueError: it holds a circular reference.
    """
    return _CANONICAL.encode(obj)


def content_hash(message: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the message's canonical JSON (sorted keys, compact separators,
    UTF-8). Equal hashes mean byte-identical canonical JSON: a message's identity.

    Raises:
        TypeError: the message is not JSON-serialisable.
    """
    return "sha256:" + hashlib.sha256(canonical_json(message).encode("utf-8")).hexdigest()


def chain_id(prev: str, message_hash: str) -> str:
    """The id of the archive node holding ``message_hash`` after the node ``prev``
    (``""`` for the first message): ``sha256:<hex>`` of ``prev + "\\n" + message_hash``.
    Equal chain ids mean equal histories up to and including that message."""
    return "sha256:" + hashlib.sha256(f"{prev}\n{message_hash}".encode()).hexdigest()


def encode_session_id(session_id: str) -> str:
    """The folder name of a session id: percent-encoding of every character but letters,
    digits and ``- _ . @ + = :`` (so ``a/b`` is ``a%2Fb`` and ``a__b`` stays itself); a
    leading ``.`` is encoded too; a name longer than :data:`MAX_NAME` characters becomes
    ``!h-<sha256 of the id>`` (the full id is stored in the folder's ``id`` file).

    Raises:
        ConfigError: the id is not a string, is empty, ``.`` or ``..``, or holds NUL.
    """
    if not isinstance(session_id, str) or session_id in ("", ".", "..") or "\0" in session_id:
        raise ConfigError(f"session_id {session_id!r} cannot name a session; fix: a non-empty "
                          "string other than '.' and '..', without NUL characters",
                          field="session_id")
    name = quote(session_id, safe=_SAFE)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > MAX_NAME:
        name = _HASHED + hashlib.sha256(session_id.encode("utf-8")).hexdigest()
    return name


def decode_session_id(name: str) -> str | None:
    """The session id of a plain folder name (None for a hashed one: read its ``id`` file)."""
    return None if name.startswith(_HASHED) else unquote(name)


class StateConflictError(CompactorError):
    """``save_state(expected_version=N)`` found another version on disk: another writer
    saved the session's state since it was loaded. Reload and decide again."""

    def __init__(self, session_id: str, expected: int | None, found: int | None) -> None:
        super().__init__(f"session {session_id!r}: state version {found} on disk, expected "
                         f"{expected}; another writer updated it (reload and retry)")
        self.expected = expected
        self.found = found


@dataclass(frozen=True)
class ArchiveNode:
    """One message of a session's original history, as archived.

    Attributes:
        position: 0-based place in the original history (``ordinal``).
        hash: :func:`content_hash` of ``message``.
        prev: chain id of the node before it (``""`` at position 0).
        message: the message, as the agent sent it (JSON-serialisable).
    """

    position: int
    hash: str
    prev: str
    message: Mapping[str, Any]

    @property
    def chain(self) -> str:
        """This node's chain id."""
        return chain_id(self.prev, self.hash)


@runtime_checkable
class SessionStoreProtocol(Protocol):
    """Where sessions live: the archive of every message sent and the session state.

    Every method is synchronous (the compactor calls them off the event loop, in a
    thread). Implementations: :class:`FileSessionStore` (embedded default).
    """

    def append(self, session_id: str, nodes: Sequence[ArchiveNode], *,
               tip: str | None = None) -> int:
        """Archive ``nodes`` (idempotent by chain id) and make ``tip`` (default: the last
        node's chain) the current branch's tip. Returns how many nodes were new."""

    def restore(self, session_id: str) -> list[dict[str, Any]]:
        """The current branch of the original history, in order."""

    def branch_hashes(self, session_id: str) -> list[str]:
        """Content hashes of the current branch, in order (for resuming a session)."""

    def branches(self, session_id: str) -> list[dict[str, Any]]:
        """Every branch: ``{"tip", "length", "fork", "current"}``."""

    def load_state(self, session_id: str) -> dict[str, Any] | None:
        """The saved state, or None."""

    def save_state(self, session_id: str, state: Mapping[str, Any], *,
                   expected_version: int | None = None) -> int:
        """Save the state; with ``expected_version``, only if the saved version is that
        one (raises :class:`StateConflictError` otherwise). Returns the new version."""

    def lock(self, session_id: str) -> Any:
        """A context manager holding the session's cross-process lock."""

    def exists(self, session_id: str) -> bool:
        """Whether the store holds anything of the session."""

    def sessions(self) -> list[str]:
        """Session ids in the store, sorted."""

    def delete(self, session_id: str) -> None:
        """Remove a session (archive and state)."""

    def info(self, session_id: str) -> dict[str, Any]:
        """Summary facts of a session (see :meth:`FileSessionStore.info`)."""

    def recall(self, session_id: str, query: str | None = None, *, start: int | None = None,
               end: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Archived messages of the current branch matching a query / ordinal range."""

    # ---- maintenance support (compactor.maintenance uses these; the compactor does not)
    def stat(self, session_id: str) -> "SessionStat | None":
        """Facts of a session (size, activity, mark, emptiness), or None when absent."""

    def export(self, session_id: str) -> tuple[bytes, dict[str, Any] | None]:
        """``(payload, state)``: every complete archive line in order, and the state."""

    def import_(self, session_id: str, payload: bytes,
                state: Mapping[str, Any] | None) -> None:
        """Put an exported session back into an empty slot (FileExistsError otherwise)."""

    def mark(self, session_id: str, marked: bool = True) -> bool:
        """Mark (or unmark) a session important; returns whether the mark changed."""

    def lock_within(self, session_id: str, timeout_s: float) -> Any:
        """:meth:`lock`, waiting at most ``timeout_s`` seconds (TimeoutError)."""

    def usage(self) -> tuple[int, int]:
        """``(bytes, sessions)`` the store takes on disk."""

    def where(self, session_id: str) -> str:
        """Where a session lives, for messages (a folder, a database and an id)."""

    def run_lock(self, timeout_s: float) -> Any:
        """A context manager held by one maintenance run at a time across every host
        sharing the store (TimeoutError after ``timeout_s`` seconds)."""

    def take_out(self, session_id: str, step: "StepJournal", *, expect: str) -> None:
        """Remove a session from the live store inside ``step`` (a journaled step: undone
        if the step rolls back or its process dies before it commits), only if its
        :func:`export_digest` is still ``expect`` (:class:`SessionChangedError`)."""

    def put_in(self, session_id: str, payload: bytes, state: Mapping[str, Any] | None,
               step: "StepJournal") -> None:
        """:meth:`import_` inside ``step`` (undone with the step); FileExistsError when
        the session holds an archive or a state already."""

    def undo_step_op(self, intent: Mapping[str, Any]) -> str | None:
        """Undo one of this store's own journal intents (``step.store_op``); idempotent.
        Returns a conflict message when it cannot."""

    def finish_step_op(self, intent: Mapping[str, Any]) -> None:
        """Finish one of this store's intents after its step committed; idempotent."""

    def taken_out(self) -> list[str]:
        """Ids of sessions :meth:`take_out` holds aside for a step that has neither
        committed nor been undone (an interrupted run), sorted."""


@dataclass
class _Index:
    """What this process knows of a session's archive file(s): the chain ids, the node
    records by chain id, the current tip, and how far the active segment was read."""

    records: dict[str, dict[str, Any]]
    tip: str
    offset: int
    inode: int
    segments: int


def branch_records(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The node lines of the current branch, in position order, given an archive's lines
    in file order (node lines and ``tip`` lines): the chain from the last tip (or the last
    new node) back to position 0. Lines of store format 1 (no ``prev``) are read as one
    linear chain, each ordinal once (the first line of an ordinal wins).

    Raises:
        ValueError: the chain is broken (a ``prev`` that is not in the archive).
        KeyError: a line lacks ``ordinal``/``hash``/``message``.
    """
    ix = _Index({}, "", 0, 0, 0)
    for r in records:
        _index_line(ix, r)
    out: list[Mapping[str, Any]] = []
    tip = ix.tip
    while tip:
        r = ix.records.get(tip)
        if r is None:
            raise ValueError(f"archive chain broken at {tip[:19]}...")
        out.append(r)
        tip = str(r["prev"])
    out.reverse()
    return out


def restore_from_records(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages of :func:`branch_records`, in order."""
    return [dict(r["message"]) for r in branch_records(records)]


class FileSessionStore:
    """The on-disk archive and state of sessions under ``root`` (see the module docs).

    Args:
        root: a directory (created 0700 if missing).
        fsync: fsync archive appends (state files are always fsynced before the rename).

    Raises:
        ConfigError: ``root`` exists and is not a directory.
        OSError: ``root`` cannot be created.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"store {self.root} is not a directory; fix: pass a folder",
                              field="store")
        _mkdir_private(self.root)
        _mkdir_private(self.root / "sessions")
        self._indexes: dict[str, _Index] = {}
        self._locks: dict[str, tuple[threading.RLock, FileLock]] = {}
        self._locks_mu = threading.Lock()

    # ------------------------------------------------------------------ paths
    def session_dir(self, session_id: str) -> Path:
        """The folder of a session (not created).

        Raises:
            ConfigError: an id that cannot name a session (see :func:`encode_session_id`).
        """
        return self.root / "sessions" / encode_session_id(session_id)

    def _dir(self, session_id: str) -> Path:
        d = self.session_dir(session_id)
        if not d.is_dir():
            _mkdir_private(d)
            if d.name.startswith(_HASHED):
                _write_private(d / "id", session_id.encode("utf-8"))
        return d

    @contextmanager
    def lock(self, session_id: str) -> Iterator[None]:
        """Hold the session's lock: a thread lock (one thread of this process at a time)
        and the ``.lock`` file lock (one process at a time). Reentrant in the holding
        thread, so a holder may call :meth:`append` and :meth:`save_state`."""
        pair = self._lock_pair(session_id)
        with pair[0], pair[1]:
            yield

    def exists(self, session_id: str) -> bool:
        """Whether the session has a folder in this store."""
        return self.session_dir(session_id).is_dir()

    # ------------------------------------------------------------------ archive
    def _files(self, d: Path) -> list[Path]:
        return sorted(d.glob("archive-*.jsonl.gz")) + [d / "archive.jsonl"]

    def _lines(self, f: Path) -> Iterator[dict[str, Any]]:
        if not f.exists():
            return
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for line in fh:
                if not line.endswith("\n"):
                    break  # a torn last line (crash mid-write): never acknowledged
                yield json.loads(line)

    def records(self, session_id: str) -> Iterator[dict[str, Any]]:
        """Every archive line of a session, in file order (closed segments first)."""
        for f in self._files(self.session_dir(session_id)):
            yield from self._lines(f)

    def _index(self, session_id: str, d: Path) -> _Index:
        """The up-to-date index (call under the session lock): re-read from scratch when
        segments were closed or the active file replaced, else read only what was
        appended since the last look."""
        active = d / "archive.jsonl"
        segs = len(list(d.glob("archive-*.jsonl.gz")))
        try:
            st = active.stat()
            inode, size = st.st_ino, st.st_size
        except FileNotFoundError:
            inode, size = 0, 0
        ix = self._indexes.get(session_id)
        if ix is None or ix.segments != segs or ix.inode != inode or size < ix.offset:
            ix = _Index({}, "", 0, inode, segs)
            for f in self._files(d)[:-1]:
                for r in self._lines(f):
                    _index_line(ix, r)
        if size > ix.offset:
            with open(active, "rb") as fh:
                fh.seek(ix.offset)
                data = fh.read(size - ix.offset)
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines():
                _index_line(ix, json.loads(line))
            ix.offset += end
        self._indexes[session_id] = ix
        return ix

    def append(self, session_id: str, nodes: Sequence[ArchiveNode], *,
               tip: str | None = None) -> int:
        """Archive ``nodes`` (or ``(position, hash, message)`` triples, chained linearly
        onto the current branch): one ``O_APPEND`` write of complete lines, under the session's
        lock, of the nodes whose chain id is not archived yet; then, when the current tip
        is not ``tip`` (default: the last node's chain id), a ``{"tip": ...}`` line.
        Returns the number of nodes written.

        Raises:
            TypeError: a message is not JSON-serialisable (nothing is written).
            ValueError: a node's ``prev`` is neither ``""`` nor an archived or earlier
                node (a broken chain: a bug of the caller).
        """
        if not nodes and tip is None:
            return 0
        d = self._dir(session_id)
        with self.lock(session_id):
            ix = self._index(session_id, d)
            nodes = _as_nodes(ix, nodes)
            want_tip = tip if tip is not None else nodes[-1].chain
            lines: list[str] = []
            fresh: list[dict[str, Any]] = []
            known = ix.records
            batch: set[str] = set()
            for n in nodes:
                c = n.chain
                if c in known or c in batch:
                    continue
                if n.prev and n.prev not in known and n.prev not in batch:
                    raise ValueError(f"node at position {n.position} follows {n.prev[:19]}..., "
                                     "which is not archived")
                rec = {"ordinal": n.position, "hash": n.hash, "prev": n.prev,
                       "message": n.message}
                lines.append(canonical_json(rec))
                fresh.append(rec)
                batch.add(c)
            implied = chain_id(fresh[-1]["prev"], fresh[-1]["hash"]) if fresh else ix.tip
            if want_tip and implied != want_tip and not (
                    not fresh and _is_ancestor(ix.records, want_tip, implied)):
                # the call is on another branch than the archive's tip: move the tip there
                # (a writer that lags behind on the same branch never moves it back)
                lines.append(canonical_json({"tip": want_tip}))
            if not lines:
                return 0
            data = "".join(x + "\n" for x in lines).encode("utf-8")
            fd = os.open(d / "archive.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            return len(fresh)

    def close_archive(self, session_id: str) -> Path | None:
        """Close the active archive segment: gzip it to ``archive-NNNN.jsonl.gz`` (written to
        a temp name, fsynced, renamed, then the plain file removed). Returns the new path."""
        d = self.session_dir(session_id)
        plain = d / "archive.jsonl"
        if not d.is_dir():
            return None
        with self.lock(session_id):
            if not plain.exists() or plain.stat().st_size == 0:
                return None
            n = len(list(d.glob("archive-*.jsonl.gz"))) + 1
            target = d / f"archive-{n:04d}.jsonl.gz"
            tmp = d / f".{target.name}.tmp"
            with open(plain, "rb") as src, open(tmp, "wb") as raw:
                os.fchmod(raw.fileno(), 0o600)
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                    gz.write(src.read())
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp, target)
            plain.unlink()
            self._indexes.pop(session_id, None)
            return target

    def restore(self, session_id: str) -> list[dict[str, Any]]:
        """The agent's original history on the current branch, in order: byte-identical
        (canonical JSON) to what the agent sent.

        Raises:
            ConfigError: the session has no folder in this store (field ``session_id``).
        """
        if not self.exists(session_id):
            raise ConfigError(f"no archive for session {session_id!r} under {self.root}; fix: "
                              "check the session id (compactor sessions list)", field="session_id")
        return restore_from_records(list(self.records(session_id)))

    def branch_hashes(self, session_id: str) -> list[str]:
        """Content hashes of the current branch, in order ([] for an unknown session)."""
        if not self.exists(session_id):
            return []
        return [str(r["hash"]) for r in branch_records(list(self.records(session_id)))]

    def branches(self, session_id: str) -> list[dict[str, Any]]:
        """Every branch of a session: ``{"tip": chain id, "length": messages, "fork":
        position where it left its parent branch (0 for the first), "current": bool}``,
        oldest first."""
        recs = [r for r in self.records(session_id) if "prev" in r or "tip" in r]
        nodes: dict[str, dict[str, Any]] = {}
        children: set[str] = set()
        tip = ""
        for r in recs:
            if "tip" in r:
                tip = r["tip"]
                continue
            c = chain_id(r["prev"], r["hash"])
            if c not in nodes:
                nodes[c] = r
                children.add(r["prev"])
                tip = c
        siblings: dict[str, int] = {}
        for r in nodes.values():
            siblings[r["prev"]] = siblings.get(r["prev"], 0) + 1
        out = []
        for c in (c for c in nodes if c not in children):
            length, fork, k = 0, 0, c
            while k:
                length += 1
                r = nodes[k]
                if siblings[r["prev"]] > 1:   # the deepest place it shares a parent
                    fork = max(fork, int(r["ordinal"]))
                k = r["prev"]
            out.append({"tip": c, "length": length, "fork": fork, "current": c == tip})
        return out

    def recall(self, session_id: str, query: str | None = None, *, start: int | None = None,
               end: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Archived messages of the current branch matching ``query`` (all words,
        case-insensitive, in the message's text) and/or with ``start <= ordinal < end``;
        at most ``limit``, oldest first. Each item: ``{"ordinal", "role", "text",
        "message"}``."""
        words = re.findall(r"\w+", (query or "").lower())
        out: list[dict[str, Any]] = []
        for o, m in enumerate(self.restore(session_id)):
            if (start is not None and o < start) or (end is not None and o >= end):
                continue
            text = text_of(m)
            if words and not all(w in text.lower() for w in words):
                continue
            out.append({"ordinal": o, "role": m.get("role"), "text": text, "message": m})
            if len(out) >= limit:
                break
        return out

    # ------------------------------------------------------------------ state
    def save_state(self, session_id: str, state: Mapping[str, Any], *,
                   expected_version: int | None = None) -> int:
        """Write ``state.json`` by atomic replace (temp file in the same folder, fsync,
        rename), under the session's lock. The saved state carries ``version``: one more
        than the version on disk.

        Raises:
            StateConflictError: ``expected_version`` is given and the version on disk is
                another one.
        """
        d = self._dir(session_id)
        with self.lock(session_id):
            disk = self.load_state(session_id)
            found = int(disk.get("version", 0)) if disk else 0
            if expected_version is not None and found != expected_version:
                raise StateConflictError(session_id, expected_version, found)
            version = found + 1
            body = json.dumps({**state, "schema_version": STATE_SCHEMA_VERSION,
                               "session_id": session_id, "version": version},
                              ensure_ascii=False, indent=1, sort_keys=True)
            _write_private(d / "state.json", body.encode("utf-8"), atomic=True)
            return version

    def load_state(self, session_id: str) -> dict[str, Any] | None:
        """The saved state of a session, or None."""
        try:
            text = (self.session_dir(session_id) / "state.json").read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        return json.loads(text)

    # ------------------------------------------------------------------ listing
    def sessions(self) -> list[str]:
        """Session ids with a folder in this store, sorted."""
        out = []
        for p in (self.root / "sessions").iterdir():
            if not p.is_dir():
                continue
            sid = decode_session_id(p.name)
            if sid is None:
                try:
                    sid = (p / "id").read_text(encoding="utf-8")
                except FileNotFoundError:
                    continue
            out.append(sid)
        return sorted(out)

    def delete(self, session_id: str) -> None:
        """Remove a session's folder (archive, state, lock)."""
        import shutil

        d = self.session_dir(session_id)
        with self.lock(session_id):
            self._indexes.pop(session_id, None)
            for f in d.iterdir():
                if f.name != ".lock":
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        shutil.rmtree(d, ignore_errors=True)
        with self._locks_mu:
            self._locks.pop(session_id, None)

    def info(self, session_id: str) -> dict[str, Any]:
        """Summary facts of a session: ``session_id``, ``compaction_count``,
        ``last_compaction_at``, ``messages_archived`` (current branch), ``branches``,
        ``archived_ranges``, ``archive_bytes`` (bytes), ``archive_segments``, ``summary``."""
        d = self.session_dir(session_id)
        state = self.load_state(session_id) or {}
        files = list(d.glob("archive*.jsonl*"))
        recs = list(self.records(session_id))
        return {"session_id": session_id,
                "compaction_count": state.get("compaction_count", 0),
                "last_compaction_at": state.get("last_compaction_at"),
                "messages_archived": len(restore_from_records(recs)),
                "branches": len({chain_id(r["prev"], r["hash"]) for r in recs if "prev" in r}
                                - {r["prev"] for r in recs if "prev" in r}) or (1 if recs else 0),
                "archived_ranges": state.get("archived_ranges", []),
                "archive_bytes": sum(f.stat().st_size for f in files),
                "archive_segments": len(files),
                "summary": state.get("summary")}

    # ---- maintenance support ---------------------------------------------------------
    # What ``compactor.maintenance`` needs to tier, archive and put back whole sessions
    # without knowing the layout above: a session's facts (:meth:`stat`), its content as
    # bytes and back (:meth:`export`, :meth:`import_files`, :meth:`import_`), the
    # importance mark, the session lock with a deadline, and the bytes on disk.

    #: The marker file of a session marked important (see :meth:`mark`).
    _MARK = "IMPORTANT"

    @classmethod
    def open_existing(cls, root: str | os.PathLike[str]) -> "FileSessionStore | None":
        """The store under ``root`` when it holds one, else None. Creates nothing, so
        read-only callers (``health``, ``maintain --dry-run``) write no byte."""
        root = Path(root)
        return cls(root) if (root / "sessions").is_dir() else None

    def stat(self, session_id: str) -> "SessionStat | None":
        """Facts of a session's folder (None when it has none): see :class:`SessionStat`.
        Reads file metadata and the state only; takes no lock.

        Raises:
            ConfigError: an id that cannot name a session.
        """
        from datetime import datetime, timezone

        d = self.session_dir(session_id)
        try:
            stats = {e.name: e.stat() for e in os.scandir(d)
                     if e.is_file() and not e.name.startswith(".")}
            dir_mtime = d.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None

        def utc(t: float) -> datetime:
            return datetime.fromtimestamp(t, timezone.utc)

        last = utc(max((st.st_mtime for n, st in stats.items() if n != self._MARK),
                       default=dir_mtime))
        if "state.json" in stats:
            try:
                at = (self.load_state(session_id) or {}).get("last_compaction_at")
                when = datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else None
            except (ValueError, OSError):
                when = None
            if when is not None:
                last = max(last, when if when.tzinfo else when.replace(tzinfo=timezone.utc))
        arch = [n for n in stats if n.startswith("archive")]
        return SessionStat(
            session_id=session_id, bytes=sum(st.st_size for st in stats.values()),
            last_active=last, first_seen=min((utc(stats[n].st_mtime) for n in arch),
                                             default=last),
            marked=self._MARK in stats,
            empty=not any(stats[n].st_size for n in arch) and "state.json" not in stats)

    def export(self, session_id: str) -> tuple[bytes, dict[str, Any] | None]:
        """``(payload, state)``: the bytes of every complete archive line, closed segments
        first then the active one (a torn last line, never acknowledged, is left out) --
        what :func:`restore_from_records` reads after ``json.loads`` of each line -- and
        :meth:`load_state`. Call it under the session's lock for a consistent pair.

        Raises:
            OSError, EOFError: a closed segment is not a readable gzip file.
            ValueError: the state is not JSON.
        """
        out = bytearray()
        for f in self._files(self.session_dir(session_id)):
            try:
                raw = f.read_bytes()
            except FileNotFoundError:
                continue
            data = gzip.decompress(raw) if f.suffix == ".gz" else raw
            out += data[: data.rfind(b"\n") + 1]
        return bytes(out), self.load_state(session_id)

    def import_files(self, session_id: str, payload: bytes,
                     state: Mapping[str, Any] | None) -> list[tuple[Path, bytes]]:
        """The files that put an exported session (see :meth:`export`) back, as
        ``(path, bytes)`` pairs, for a caller that writes them itself -- each whole and
        atomically (temp file, fsync, rename; files 0600, folders 0700), under the
        session's lock, into a session whose :meth:`stat` is None or ``empty``.
        Maintenance writes them through its journal, so a crash rolls them back. The
        payload becomes the active segment; the state is written as given (its
        ``version`` kept). Nothing is written here.

        Raises:
            ConfigError: an id that cannot name a session.
            ValueError: the payload does not end with a complete line.
        """
        if payload and not payload.endswith(b"\n"):
            raise ValueError("payload ends inside a line; export gives complete lines only")
        d = self.session_dir(session_id)
        out: list[tuple[Path, bytes]] = []
        if d.name.startswith(_HASHED):
            out.append((d / "id", session_id.encode("utf-8")))
        if payload:
            out.append((d / "archive.jsonl", payload))
        if state is not None:
            out.append((d / "state.json", json.dumps(state, ensure_ascii=False, indent=1,
                                                     sort_keys=True).encode("utf-8")))
        return out

    def import_(self, session_id: str, payload: bytes,
                state: Mapping[str, Any] | None) -> None:
        """Put an exported session back (the files of :meth:`import_files`, each written
        atomically), under the session's lock.

        Raises:
            FileExistsError: the session holds an archive or a state already.
            ConfigError, ValueError: see :meth:`import_files`.
        """
        with self.lock(session_id):
            st = self.stat(session_id)
            if st is not None and not st.empty:
                raise FileExistsError(f"session {session_id!r} is already in {self.root}; "
                                      "fix: restore it from there")
            for path, data in self.import_files(session_id, payload, state):
                _write_private(path, data, atomic=True)
            self._indexes.pop(session_id, None)

    def mark(self, session_id: str, marked: bool = True) -> bool:
        """Mark (or unmark) a session important: maintenance keeps marked sessions
        longer (:attr:`SessionStat.marked`). Under the session's lock. Returns whether
        the mark changed.

        Raises:
            ConfigError: the session has no folder in this store (field ``session_id``).
        """
        if not self.exists(session_id):
            raise ConfigError(f"no session {session_id!r} under {self.root}; fix: check the "
                              "id with `compactor sessions list`", field="session_id")
        f = self.session_dir(session_id) / self._MARK
        with self.lock(session_id):
            if f.exists() == marked:
                return False
            if marked:
                _write_private(f, b"marked important (compactor archive mark)\n", atomic=True)
            else:
                f.unlink()
            return True

    @contextmanager
    def lock_within(self, session_id: str, timeout_s: float) -> Iterator[None]:
        """:meth:`lock`, waiting at most ``timeout_s`` seconds (the same lock: a holder of
        either excludes the other). Creates the session's folder when it has none.

        Raises:
            TimeoutError: another thread or process held it for ``timeout_s`` seconds.
        """
        from filelock import Timeout

        pair = self._lock_pair(session_id)
        busy = TimeoutError(f"session {session_id!r} is locked by another writer "
                            f"(waited {timeout_s:g} s)")
        if not pair[0].acquire(timeout=max(0.0, timeout_s)):
            raise busy
        try:
            try:
                pair[1].acquire(timeout=max(0.0, timeout_s))
            except Timeout:
                raise busy from None
            try:
                yield
            finally:
                pair[1].release()
        finally:
            pair[0].release()

    def _lock_pair(self, session_id: str) -> tuple[Any, FileLock]:
        """The session's thread lock and file lock (created once per store instance; the
        session's folder is created when it has none)."""
        d = self._dir(session_id)
        with self._locks_mu:
            pair = self._locks.get(session_id)
            if pair is None:
                pair = self._locks[session_id] = (
                    threading.RLock(), FileLock(str(d / ".lock"), thread_local=False))
            return pair

    def usage(self) -> tuple[int, int]:
        """``(bytes, sessions)``: bytes of every file of every session (locks and temp
        files included), and how many session folders there are."""
        base = self.root / "sessions"
        total = 0
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:
                    pass
        folders = sum(1 for p in base.iterdir() if p.is_dir()) if base.is_dir() else 0
        return total, folders

    def where(self, session_id: str) -> str:
        """The session's folder (see :meth:`session_dir`), for messages."""
        return str(self.session_dir(session_id))

    def run_lock(self, timeout_s: float) -> ContextManager[None]:
        """A no-op: a file store lives on one file system, where maintenance's own lock
        file beside it (``.maintenance/maintain.lock`` under ``root``) already keeps a
        second run out."""
        return nullcontext()

    def take_out(self, session_id: str, step: "StepJournal", *, expect: str) -> None:
        """Move the session's folder aside through ``step`` (``step.remove``: into the
        step's trash, renamed back if the step rolls back or dies before its commit).
        Call under the session's lock.

        Raises:
            SessionChangedError: its :func:`export_digest` is not ``expect`` (nothing done).
            OSError: from the rename.
        """
        if export_digest(*self.export(session_id)) != expect:
            raise SessionChangedError(session_id)
        step.remove(self.session_dir(session_id))
        self._indexes.pop(session_id, None)

    def put_in(self, session_id: str, payload: bytes, state: Mapping[str, Any] | None,
               step: "StepJournal") -> None:
        """Write the files of :meth:`import_files` through ``step`` (``step.write``: each
        atomic, removed again if the step rolls back). Call under the session's lock.

        Raises:
            FileExistsError: the session holds an archive or a state already.
            ConfigError, ValueError: see :meth:`import_files`.
        """
        st = self.stat(session_id)
        if st is not None and not st.empty:
            raise FileExistsError(f"session {session_id!r} is already in {self.root}")
        for path, data in self.import_files(session_id, payload, state):
            step.write(path, data)
        self._indexes.pop(session_id, None)

    def undo_step_op(self, intent: Mapping[str, Any]) -> str | None:
        """The file store journals only file intents (``step.write``/``remove``), which
        the journal undoes itself: any store intent is not this store's."""
        return f"journal intent {intent.get('op')!r} is not a file store's; left as it is"

    def finish_step_op(self, intent: Mapping[str, Any]) -> None:
        """Nothing to finish (see :meth:`undo_step_op`)."""

    def taken_out(self) -> list[str]:
        """Always []: a folder taken out is in the step's trash, and the journal beside
        the store (which ``health`` checks) says what an interrupted run left."""
        return []


@dataclass(frozen=True)
class SessionStat:
    """What :meth:`FileSessionStore.stat` tells of a session (maintenance support).

    Attributes:
        session_id: the id.
        bytes: bytes of its files (the lock file and temp files excluded).
        last_active: newest modification time of its files but the mark (its folder's
            when it has none) or its state's ``last_compaction_at``, whichever is later
            (aware, UTC): marking a session is not activity.
        first_seen: oldest modification time of its archive segments (``last_active``
            when it has none).
        marked: marked important (:meth:`FileSessionStore.mark`).
        empty: it holds no archive line and no state.
    """

    session_id: str
    bytes: int
    last_active: datetime
    first_seen: datetime
    marked: bool
    empty: bool


class SessionChangedError(CompactorError):
    """A session was written to after maintenance read it (:meth:`take_out
    <SessionStoreProtocol.take_out>` refused to remove it: a later run will decide again)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} was written to since it was read; left "
                         "in the live store")
        self.session_id = session_id


def export_digest(payload: bytes, state: Mapping[str, Any] | None) -> str:
    """``sha256:<hex>`` of an export (:meth:`SessionStoreProtocol.export`): the payload,
    a NUL, and the state's canonical JSON (``null`` for none). Equal digests mean the same
    archive lines and the same state, version included."""
    h = hashlib.sha256(payload)
    h.update(b"\0" + canonical_json(state).encode("utf-8"))
    return "sha256:" + h.hexdigest()


class StepJournal(Protocol):
    """What a store is given to change itself inside a caller's journaled step
    (``compactor.maintenance``'s step): every change is undone if the step rolls back,
    or if its process dies before the step commits (the next run's recovery)."""

    def write(self, path: Path, data: bytes) -> None:
        """Create or replace a file atomically (the old version kept until the commit)."""

    def remove(self, path: Path) -> None:
        """Move a file or folder into the step's trash (deleted at the commit)."""

    def store_op(self, op: str, fields: Mapping[str, Any], act: Any) -> None:
        """Journal (durably) the intent ``{"op": op, **fields}``, then call ``act()``.
        Undoing it later is the store's :meth:`~SessionStoreProtocol.undo_step_op`,
        finishing it after the commit its :meth:`~SessionStoreProtocol.finish_step_op`."""
# ---- end of maintenance support


#: The embedded default store: ``SessionStore(root)`` is a :class:`FileSessionStore`.
SessionStore = FileSessionStore


def _as_nodes(ix: _Index, items: Sequence[Any]) -> list[ArchiveNode]:
    """Nodes as given; ``(position, hash, message)`` triples (the store-format-1 call) are
    chained linearly onto the current branch."""
    out: list[ArchiveNode] = []
    for it in items:
        if isinstance(it, ArchiveNode):
            out.append(it)
            continue
        pos, h, m = it
        if pos == 0:
            prev = ""
        elif out and out[-1].position == pos - 1:
            prev = out[-1].chain
        else:
            prev = ix.tip
            while prev and int(ix.records[prev]["ordinal"]) > pos - 1:
                prev = str(ix.records[prev]["prev"])
        out.append(ArchiveNode(int(pos), str(h), prev, m))
    return out


def _is_ancestor(records: Mapping[str, Mapping[str, Any]], a: str, b: str) -> bool:
    """Whether node ``a`` is ``b`` or on ``b``'s chain back to the root."""
    while b:
        if b == a:
            return True
        r = records.get(b)
        if r is None:
            return False
        b = str(r["prev"])
    return False


def _index_line(ix: _Index, r: Mapping[str, Any]) -> None:
    if "tip" in r:
        ix.tip = str(r["tip"])
    elif "prev" in r:
        c = chain_id(str(r["prev"]), str(r["hash"]))
        if c not in ix.records:
            ix.records[c] = dict(r)
            ix.tip = c
    else:  # store format 1: a linear chain by ordinal
        prev = ix.tip if int(r["ordinal"]) > 0 else ""
        c = chain_id(prev, str(r["hash"]))
        if c not in ix.records:
            ix.records[c] = {**r, "prev": prev}
            ix.tip = c


def _mkdir_private(d: Path) -> None:
    """Create ``d`` (and parents) with mode 0700 whatever the umask; an existing folder is
    left as it is."""
    if d.is_dir():
        return
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)


def _write_private(path: Path, data: bytes, *, atomic: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600 (atomic: temp file, fsync, rename)."""
    if not atomic:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


#: A tool an agent can call to get back what the compactor archived (Anthropic format).
RECALL_TOOL_ANTHROPIC: dict[str, Any] = {
    "name": "recall_archived_context",
    "description": ("Search the earlier part of this conversation that was summarized out of "
                    "the context window. Returns the original messages, verbatim. Use it when "
                    "the summary lacks a detail you need (an id, a number, an exact error)."),
    "input_schema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "words that must all appear"},
            "start": {"type": "integer", "description": "first message ordinal (0-based)"},
            "end": {"type": "integer", "description": "ordinal after the last one"},
            "limit": {"type": "integer", "description": "at most this many messages", "default": 10},
        },
    },
}

#: The same tool in OpenAI chat ``tools`` format.
RECALL_TOOL_OPENAI: dict[str, Any] = {
    "type": "function",
    "function": {"name": RECALL_TOOL_ANTHROPIC["name"],
                 "description": RECALL_TOOL_ANTHROPIC["description"],
                 "parameters": RECALL_TOOL_ANTHROPIC["input_schema"]},
}


def run_recall_tool(store: SessionStoreProtocol, session_id: str,
                    arguments: Mapping[str, Any] | str, *, max_chars: int = 8000) -> str:
    """Execute a ``recall_archived_context`` call: ``arguments`` is the tool input (a dict,
    or OpenAI's JSON string). Returns the text for the ``tool_result`` (at most
    ``max_chars`` characters)."""
    args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
    items = store.recall(session_id, args.get("query"), start=args.get("start"),
                         end=args.get("end"), limit=int(args.get("limit") or 10))
    if not items:
        return "No archived messages match."
    text = "\n\n".join(f"[{i['ordinal']}] {i['role']}: {i['text']}" for i in items)
    return text if len(text) <= max_chars else text[:max_chars] + "\n[... cut ...]"
