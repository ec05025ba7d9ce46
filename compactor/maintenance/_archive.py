"""JSON session archives by year and month, and the lossless payload they point to.

Layout under the archive root (default ``<store>/archive``)::

    archive/2025/03/<name>.json        the entry: tier, form, metadata, importance (JSON)
    archive/2025/03/<name>.jsonl.gz    the lossless payload: the session's archive lines

``<name>`` is the session's folder name in the store (its id, ``/`` written ``__``);
``YYYY/MM`` is the UTC month of its last activity. The payload is the exact bytes of
every complete line of the store's archive segments (``archive-NNNN.jsonl.gz`` then
``archive.jsonl``): ``{"ordinal", "hash", "message"}`` per line, so the restored history is
byte-identical to what ``SessionStore.restore`` gave. It is stored gzip-compressed with
**hash elision**: a line that is the canonical JSON of its record and whose ``hash`` is
the ``content_hash`` of its message is written without the ``hash`` key (64 hex digits
per message that gzip cannot shrink, about 37 % of the compressed size on the real
transcripts); reading recomputes it. Other lines are kept verbatim. ``zcat`` shows the
lines. The entry records the SHA-256 of the original, uncompressed payload; every
restore rebuilds the payload and checks it.

Entry schema (``schema_version`` 1; readers ignore keys they do not know)::

    {"schema_version": 1, "kind": "compactor.session-archive", "session_id": str,
     "tier": "full"|"key_points"|"brief_summary"|"metadata_only", "tiered_at": ISO-8601,
     "age_days": float, "importance": {score, important, marked, signals},
     "metadata": {participants, first_seen, last_active, messages, tokens, turns,
                  tool_calls, tools, errors, outcome, format, compaction_count},
     "form": null | {kind, text, tokens, target_share, share},
     "lossless": {file, sha256, bytes, stored_bytes, messages, encoding},
     "state": the session's state.json object or null,
     "history": [{"tier", "at"}, ...]}
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from compactor._compactor import content_hash
from compactor._errors import CompactorError
from compactor._store import canonical_json

SCHEMA_VERSION = 1
KIND = "compactor.session-archive"
ENTRY_SUFFIX = ".json"
PAYLOAD_SUFFIX = ".jsonl.gz"


class ArchiveError(CompactorError):
    """An archive entry is missing, unreadable, of an unknown schema, or its payload does
    not match the recorded SHA-256 (the message names the file and what to do).

    Attributes:
        path: the entry or payload file at fault (``None`` when none was found).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def iso(dt: datetime) -> str:
    """UTC ISO 8601 with seconds and a ``Z`` suffix."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 date/datetime (``Z`` accepted; naive means UTC), as UTC."""
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def as_utc(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime (a naive one is taken to be UTC already). Ages,
    ledger windows and day boundaries compare against UTC ``ts`` strings, so every
    measuring time goes through this first."""
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def folder_name(session_id: str) -> str:
    """The store's folder name for a session id (``/`` becomes ``__``)."""
    return session_id.replace("/", "__")


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (level 9, no timestamp, no file name)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def elide_hashes(payload: bytes) -> bytes:
    """The stored form of a payload (see the module docstring): lossless, smaller."""
    out = []
    for line in payload.split(b"\n")[:-1]:
        rec = json.loads(line)
        if (isinstance(rec, dict) and set(rec) == {"ordinal", "hash", "message"}
                and rec["hash"] == content_hash(rec["message"])
                and canonical_json(rec).encode("utf-8") == line):
            line = canonical_json({"ordinal": rec["ordinal"],
                                   "message": rec["message"]}).encode("utf-8")
        out.append(line + b"\n")
    return b"".join(out)


def restore_hashes(stored: bytes) -> bytes:
    """Inverse of :func:`elide_hashes`."""
    out = []
    for line in stored.split(b"\n")[:-1]:
        rec = json.loads(line)
        if isinstance(rec, dict) and set(rec) == {"ordinal", "message"}:
            line = canonical_json({"ordinal": rec["ordinal"], "hash": content_hash(rec["message"]),
                                   "message": rec["message"]}).encode("utf-8")
        out.append(line + b"\n")
    return b"".join(out)


def pack(payload: bytes) -> bytes:
    """Payload -> the bytes of the ``.jsonl.gz`` file."""
    return gzip_bytes(elide_hashes(payload))


def unpack(stored: bytes) -> bytes:
    """The bytes of a ``.jsonl.gz`` file -> the original payload.

    Raises:
        OSError, EOFError, ValueError: not gzip, cut off, or not JSON lines.
    """
    return restore_hashes(gzip.decompress(stored))


def messages_from_payload(data: bytes) -> list[dict[str, Any]]:
    """The history in a payload, as ``SessionStore.restore`` returns it: each ordinal once
    (first occurrence), in ordinal order."""
    seen: dict[int, dict[str, Any]] = {}
    for line in data.split(b"\n"):
        if line:
            rec = json.loads(line)
            seen.setdefault(int(rec["ordinal"]), rec["message"])
    return [seen[k] for k in sorted(seen)]


@dataclass(frozen=True)
class Entry:
    """One archived session: its entry file, payload file and parsed entry.

    Attributes:
        path: the ``.json`` entry.
        data: the parsed entry (see the module docstring).
    """

    path: Path
    data: dict[str, Any]

    @property
    def session_id(self) -> str:
        return str(self.data["session_id"])

    @property
    def tier(self) -> str:
        return str(self.data["tier"])

    @property
    def payload_path(self) -> Path:
        return self.path.with_name(self.data["lossless"]["file"])

    @property
    def last_active(self) -> datetime:
        return parse_iso(self.data["metadata"]["last_active"])

    @property
    def important(self) -> bool:
        return bool(self.data["importance"]["important"])

    def payload(self, *, check: bool = True) -> bytes:
        """The uncompressed payload; with ``check``, verified against the entry's SHA-256.

        Raises:
            ArchiveError: the payload is missing, not gzip, or its hash differs.
        """
        p = self.payload_path
        try:
            data = unpack(p.read_bytes())
        except FileNotFoundError:
            raise ArchiveError(f"payload {p} of session {self.session_id!r} is missing; fix: "
                               "restore it from a backup of the archive", path=str(p)) from None
        except (OSError, EOFError, ValueError) as e:
            raise ArchiveError(f"payload {p} is not a readable gzip file ({e}); fix: restore "
                               "it from a backup of the archive", path=str(p)) from e
        want = self.data["lossless"]["sha256"]
        if check and sha256(data) != want:
            raise ArchiveError(f"payload {p} does not match its recorded hash {want}; the "
                               "archive is damaged; fix: restore the file from a backup",
                               path=str(p))
        return data

    def messages(self) -> list[dict[str, Any]]:
        """The session's full original history, hash-verified (see :meth:`payload`)."""
        return messages_from_payload(self.payload())


def month_dir(root: Path, when: datetime) -> Path:
    """``<root>/YYYY/MM`` for the UTC month of ``when``."""
    u = when.astimezone(timezone.utc)
    return root / f"{u.year:04d}" / f"{u.month:02d}"


def read_entry(path: Path) -> Entry:
    """Parse one entry file.

    Raises:
        ArchiveError: unreadable JSON, a different ``kind`` or a newer ``schema_version``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArchiveError(f"archive entry {path} cannot be read ({e}); fix: restore it from "
                           "a backup or delete it with its payload", path=str(path)) from e
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ArchiveError(f"{path} is not a session archive entry", path=str(path))
    if not isinstance(data.get("schema_version"), int) or data["schema_version"] > SCHEMA_VERSION:
        raise ArchiveError(f"{path} has schema_version {data.get('schema_version')!r}; this "
                           f"version reads up to {SCHEMA_VERSION}; fix: upgrade compactor",
                           path=str(path))
    # the entry names its payload and its session: both must be the ones its own file name
    # stands for, or a damaged (or crafted) entry would make a restore read, or a retention
    # rule delete, another session's payload (or a path outside the month folder)
    stem = path.name[: -len(ENTRY_SUFFIX)]
    lossless = data.get("lossless")
    if not isinstance(lossless, dict) or lossless.get("file") != stem + PAYLOAD_SUFFIX:
        got = lossless.get("file") if isinstance(lossless, dict) else lossless
        raise ArchiveError(f"{path} names the payload {got!r}, not {stem + PAYLOAD_SUFFIX!r}; "
                           "fix: restore the entry from a backup", path=str(path))
    sid = data.get("session_id")
    if not isinstance(sid, str) or folder_name(sid) != stem:
        raise ArchiveError(f"{path} holds session {sid!r}, not the one its name stands for; "
                           "fix: restore the entry from a backup", path=str(path))
    return Entry(path, data)


def entry_files(root: Path) -> Iterator[Path]:
    """Every ``YYYY/MM/*.json`` entry under ``root``, sorted (temp files skipped)."""
    if not root.is_dir():
        return
    for p in sorted(root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/*" + ENTRY_SUFFIX)):
        if not p.name.startswith("."):
            yield p


def entries(root: Path) -> dict[str, Entry]:
    """Readable entries by session id (the newest month wins if a session is in two;
    see :func:`entry_files`). Unreadable entries are skipped (``health`` reports them)."""
    out: dict[str, Entry] = {}
    for p in entry_files(root):
        try:
            e = read_entry(p)
        except ArchiveError:
            continue
        out[e.session_id] = e
    return out


def find(root: Path, session_id: str) -> Entry:
    """The entry of ``session_id``.

    Raises:
        ArchiveError: no entry for it (the message says how to list what exists).
    """
    name = folder_name(session_id) + ENTRY_SUFFIX
    found = [p for p in entry_files(root) if p.name == name]
    if not found:
        raise ArchiveError(f"no archived session {session_id!r} under {root}; fix: check the "
                           "id with `compactor archive list`")
    return read_entry(found[-1])


def build_entry(*, session_id: str, tier: str, now: datetime, age_days: float,
                importance: Mapping[str, Any], metadata: Mapping[str, Any],
                form: Mapping[str, Any] | None, lossless: Mapping[str, Any],
                state: Any, history: list[dict[str, Any]]) -> bytes:
    """The entry file's bytes: indented JSON, keys in the documented order, UTF-8."""
    doc = {"schema_version": SCHEMA_VERSION, "kind": KIND, "session_id": session_id,
           "tier": tier, "tiered_at": iso(now), "age_days": round(age_days, 2),
           "importance": dict(importance), "metadata": dict(metadata),
           "form": dict(form) if form else None, "lossless": dict(lossless), "state": state,
           "history": history}
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
