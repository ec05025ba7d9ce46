"""JSON session archives by year and month, and the lossless payload they point to.

Layout under the archive root (default ``<store>/archive``)::

    archive/2025/03/<name>.json        the entry: tier, form, metadata, importance (JSON)
    archive/2025/03/<name>.jsonl.gz    the lossless payload: the session's archive lines

``<name>`` is :func:`compactor._store.encode_session_id` of the session id (reversible,
collision-free; entries written before it name a session by its id with ``/`` written
``__``, and are still read); ``YYYY/MM`` is the UTC month of its last activity. The
payload is what ``SessionStore.export`` gives: the exact bytes of every complete line of
the session's archive, in order -- nodes ``{"ordinal", "hash", "prev", "message"}`` (and
``{"tip"}`` lines; store format 1 lines have no ``prev``) -- so the restored history
(:func:`compactor._store.restore_from_records`) is byte-identical to what
``SessionStore.restore`` gave. It is stored gzip-compressed with **hash elision**: a
node line that is the canonical JSON of its record and whose ``hash`` is the
``content_hash`` of its message is written without the ``hash`` key, and without
``prev`` too when ``prev`` is the chain id of the node line just before it (64 hex
digits each per message that gzip cannot shrink; the hash alone was about 37 % of the
compressed size on the real transcripts); an ``"elided"`` key says what reading must
recompute (``"h"``: the hash, ``"hp"``: both; format 1 lines keep their older form
``{"ordinal", "message"}``). Other lines are kept verbatim. ``zcat`` shows the lines.
The entry records the SHA-256 of the original, uncompressed payload; every restore
rebuilds the payload and checks it.

Entry schema (``schema_version`` 1; readers ignore keys they do not know)::

    {"schema_version": 1, "kind": "compactor.session-archive", "session_id": str,
     "tier": "full"|"key_points"|"brief_summary"|"metadata_only", "tiered_at": ISO-8601,
     "age_days": float, "importance": {score, important, marked, signals},
     "metadata": {participants, first_seen, last_active, messages, tokens, turns,
                  tool_calls, tools, errors, outcome, format, compaction_count},
     "form": null | {kind, text, tokens, target_share, share},
     "lossless": {file, sha256, bytes, stored_bytes, messages, encoding},
     "state": the session's saved state (a JSON object) or null,
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

from compactor._errors import CompactorError
from compactor._store import (
    canonical_json,
    chain_id,
    content_hash,
    encode_session_id,
    restore_from_records,
)

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


def entry_name(session_id: str) -> str:
    """The file stem of a session's entry and payload: the store's reversible,
    collision-free encoding of its id.

    Raises:
        ConfigError: an id that cannot name a session.
    """
    return encode_session_id(session_id)


def legacy_entry_name(session_id: str) -> str:
    """The stem entries had before the reversible encoding (``/`` written ``__``;
    ambiguous, so only read, never written)."""
    return "__".join(session_id.split("/"))


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (level 9, no timestamp, no file name)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_V1 = {"ordinal", "hash", "message"}          # a node line of store format 1
_V2 = {"ordinal", "hash", "prev", "message"}  # a node line of the chained archive


def elide_hashes(payload: bytes) -> bytes:
    """The stored form of a payload (see the module docstring): lossless, smaller."""
    out = []
    last = ""    # chain id of the previous chained node line
    for line in payload.split(b"\n")[:-1]:
        rec = json.loads(line)
        keys = set(rec) if isinstance(rec, dict) else set()
        if keys in (_V1, _V2) and rec["hash"] == content_hash(rec["message"]) \
                and canonical_json(rec).encode("utf-8") == line:
            short = {"ordinal": rec["ordinal"], "message": rec["message"]}
            if keys == _V2:
                if rec["prev"] == last:
                    short["elided"] = "hp"
                else:
                    short.update(elided="h", prev=rec["prev"])
            line = canonical_json(short).encode("utf-8")
        if keys == _V2:
            last = chain_id(rec["prev"], rec["hash"])
        out.append(line + b"\n")
    return b"".join(out)


def restore_hashes(stored: bytes) -> bytes:
    """Inverse of :func:`elide_hashes`."""
    out = []
    last = ""
    for line in stored.split(b"\n")[:-1]:
        rec = json.loads(line)
        keys = set(rec) if isinstance(rec, dict) else set()
        if keys in ({"ordinal", "message"}, {"ordinal", "message", "elided"},
                    {"ordinal", "message", "elided", "prev"}):
            full = {"ordinal": rec["ordinal"], "hash": content_hash(rec["message"]),
                    "message": rec["message"]}
            if "elided" in rec:
                full["prev"] = last if rec["elided"] == "hp" else rec["prev"]
            rec = full
            line = canonical_json(rec).encode("utf-8")
            keys = set(rec)
        if keys == _V2:
            last = chain_id(rec["prev"], rec["hash"])
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
    """The history in a payload, as ``SessionStore.restore`` returns it: the current
    branch of the archive lines (:func:`compactor._store.restore_from_records`).

    Raises:
        ValueError: a line is not JSON, or the chain is broken.
        KeyError: a node line lacks a field.
    """
    return restore_from_records([json.loads(line) for line in data.split(b"\n") if line])


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
        """The session's full original history, hash-verified (see :meth:`payload`).

        Raises:
            ArchiveError: see :meth:`payload`; or its lines do not form a history.
        """
        data = self.payload()
        try:
            return messages_from_payload(data)
        except (ValueError, KeyError, TypeError) as e:
            raise ArchiveError(f"payload {self.payload_path} holds no readable history ({e}); "
                               "fix: restore it from a backup of the archive",
                               path=str(self.payload_path)) from e


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
    if not isinstance(sid, str) or stem not in _names(sid):
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
    """The entry of ``session_id`` (the newest month's): the one under its current name,
    else one under its legacy name that holds this very id (``a/b`` and ``a__b`` once
    shared ``a__b``).

    Raises:
        ArchiveError: no entry for it (the message says how to list what exists), or the
            entry cannot be read.
    """
    names = _names(session_id)
    files = list(entry_files(root))
    current = [p for p in files if names and p.name == names[0] + ENTRY_SUFFIX]
    if current:
        return read_entry(current[-1])
    for p in reversed([p for p in files if p.name in {n + ENTRY_SUFFIX for n in names[1:]}]):
        e = read_entry(p)
        if e.session_id == session_id:
            return e
    raise ArchiveError(f"no archived session {session_id!r} under {root}; fix: check the "
                       "id with `compactor archive list`")


def _names(session_id: str) -> tuple[str, ...]:
    """The stems an entry of ``session_id`` may have (the current one first); none for an
    id that cannot name a session."""
    try:
        return (entry_name(session_id), legacy_entry_name(session_id))
    except CompactorError:
        return ()


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
