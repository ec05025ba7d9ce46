"""Session state and the lossless archive: nothing the compactor removes is ever lost.

Layout under the store's root (directories 0700, files 0600)::

    sessions/<session_id>/archive.jsonl         the active archive segment
    sessions/<session_id>/archive-0001.jsonl.gz closed segments (gzip), read transparently
    sessions/<session_id>/state.json            session state, written by atomic replace

The archive is a write-ahead log of the conversation: every message the agent sends is
written once, on first sight, before it can leave the context, as one line
``{"ordinal": N, "hash": "sha256:...", "message": {...}}`` (``ordinal`` = its position in the
agent's original history). ``restore()`` reads the lines back in ordinal order, so the full
original history comes back byte-identical in canonical JSON, whatever was compacted.

Session state (``state.json``) is written by atomic replace (temp file, fsync, rename) after
each compaction: the running summary, ``compaction_count``, ``last_compaction_at``, the next
ordinal, the archived (evicted) ordinal ranges, and the compacted view (ordinals and hashes),
so a restarted process resumes the session from disk.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from filelock import FileLock

from ._errors import ConfigError
from ._format import text_of

STATE_SCHEMA_VERSION = 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9._@:+=-][A-Za-z0-9._@:+=/-]{0,200}$")


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, compact separators, UTF-8 text (no ASCII escaping)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SessionStore:
    """The on-disk archive and state of sessions under ``root``.

    Args:
        root: a directory (created 0700 if missing).
        fsync: fsync archive appends (state files are always fsynced before the rename).

    Raises:
        ConfigError: a session id that is not a safe path component.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        (self.root / "sessions").mkdir(parents=True, exist_ok=True, mode=0o700)

    # ------------------------------------------------------------------ paths
    def session_dir(self, session_id: str) -> Path:
        """The folder of a session (not created)."""
        if not _SAFE_ID.match(session_id) or ".." in session_id.split("/"):
            raise ConfigError(f"session_id {session_id!r} cannot name a folder; fix: use letters, "
                              "digits and . _ - : @ + = / only", field="session_id")
        return self.root / "sessions" / session_id.replace("/", "__")

    def _lock(self, d: Path) -> FileLock:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return FileLock(str(d / ".lock"))

    # ------------------------------------------------------------------ archive
    def append(self, session_id: str, items: Sequence[tuple[int, str, Mapping[str, Any]]]) -> None:
        """Archive messages: ``items`` are ``(ordinal, content_hash, message)``. One write of
        complete lines on an ``O_APPEND`` file, under the session's lock.

        Raises:
            TypeError: a message is not JSON-serialisable (nothing is written).
        """
        if not items:
            return
        data = "".join(canonical_json({"ordinal": o, "hash": h, "message": m}) + "\n"
                       for o, h, m in items).encode("utf-8")
        d = self.session_dir(session_id)
        with self._lock(d):
            fd = os.open(d / "archive.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def close_archive(self, session_id: str) -> Path | None:
        """Close the active archive segment: gzip it to ``archive-NNNN.jsonl.gz`` (written to
        a temp name, fsynced, renamed, then the plain file removed). Returns the new path."""
        d = self.session_dir(session_id)
        plain = d / "archive.jsonl"
        with self._lock(d):
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
            return target

    def _records(self, session_id: str) -> Iterator[dict[str, Any]]:
        d = self.session_dir(session_id)
        files = sorted(d.glob("archive-*.jsonl.gz")) + [d / "archive.jsonl"]
        for f in files:
            if not f.exists():
                continue
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
                for line in fh:
                    if not line.endswith("\n"):
                        break  # a torn last line (crash mid-write): the message was not acknowledged
                    yield json.loads(line)

    def restore(self, session_id: str) -> list[dict[str, Any]]:
        """The agent's full original history, in order (each ordinal once).

        Raises:
            ConfigError: the session has no archive.
        """
        seen: dict[int, dict[str, Any]] = {}
        for r in self._records(session_id):
            seen.setdefault(int(r["ordinal"]), r["message"])
        if not seen and not self.session_dir(session_id).exists():
            raise ConfigError(f"no archive for session {session_id!r} under {self.root}; fix: "
                              "check the session id (compactor sessions list)", field="session_id")
        return [seen[k] for k in sorted(seen)]

    def recall(self, session_id: str, query: str | None = None, *, start: int | None = None,
               end: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Archived messages matching ``query`` (all words, case-insensitive, in the
        message's text) and/or with ``start <= ordinal < end``; at most ``limit``, oldest
        first. Each item: ``{"ordinal", "role", "text", "message"}``."""
        words = [w for w in re.findall(r"\w+", (query or "").lower())]
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        for r in sorted(self._records(session_id), key=lambda r: r["ordinal"]):
            o = int(r["ordinal"])
            if o in seen or (start is not None and o < start) or (end is not None and o >= end):
                continue
            seen.add(o)
            text = text_of(r["message"])
            low = text.lower()
            if words and not all(w in low for w in words):
                continue
            out.append({"ordinal": o, "role": r["message"].get("role"), "text": text,
                        "message": r["message"]})
            if len(out) >= limit:
                break
        return out

    # ------------------------------------------------------------------ state
    def save_state(self, session_id: str, state: Mapping[str, Any]) -> None:
        """Write ``state.json`` by atomic replace (temp file in the same folder, fsync, rename)."""
        d = self.session_dir(session_id)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = json.dumps({"schema_version": STATE_SCHEMA_VERSION, "session_id": session_id,
                           **state}, ensure_ascii=False, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".state.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, body.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, d / "state.json")

    def load_state(self, session_id: str) -> dict[str, Any] | None:
        """The saved state of a session, or None."""
        p = self.session_dir(session_id) / "state.json"
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def sessions(self) -> list[str]:
        """Session ids with a folder in this store, sorted."""
        base = self.root / "sessions"
        return sorted(p.name.replace("__", "/") for p in base.iterdir() if p.is_dir())

    def info(self, session_id: str) -> dict[str, Any]:
        """Summary facts of a session: state fields, archived message count and bytes."""
        d = self.session_dir(session_id)
        state = self.load_state(session_id) or {}
        files = list(d.glob("archive*.jsonl*"))
        return {"session_id": session_id,
                "compaction_count": state.get("compaction_count", 0),
                "last_compaction_at": state.get("last_compaction_at"),
                "messages_archived": sum(1 for _ in self._records(session_id)),
                "archived_ranges": state.get("archived_ranges", []),
                "archive_bytes": sum(f.stat().st_size for f in files),
                "archive_segments": len(files),
                "summary": state.get("summary")}


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


def run_recall_tool(store: SessionStore, session_id: str, arguments: Mapping[str, Any] | str,
                    *, max_chars: int = 8000) -> str:
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
