"""The record codec: plain functions, no I/O.

``build_record`` turns ``(event, fields, now)`` into the dict that is written;
``encode_record`` turns it into one line of bytes; ``decode_line`` turns a line back
into a record or says why it is not one. Secret scrubbing and content redaction happen
in ``build_record``, so no code path can write an unscrubbed value.

Line format: compact JSON (``,`` and ``:`` separators, UTF-8, no NaN), one object per
line, ``\\n``-terminated. Key order is fixed: the common keys first in the order of
``COMMON_KEYS``, then the event fields sorted by name; nested objects are sorted too.
The same event therefore always encodes to the same bytes, and ``tail`` reads well.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from typing import Any, Mapping

from compactor._errors import ConfigError
from compactor._redact import MASK as _MASK
from compactor._redact import is_secret_key
from compactor._redact import redact as _redact_text
from compactor.ledger._errors import LedgerFieldError

SCHEMA_VERSION = 1
"""The ``schema_version`` written in every record."""

COMMON_KEYS = ("schema_version", "ts", "event", "session_id", "agent_id")
"""Keys every record has, in the order they are written."""

RESERVED_FIELDS = frozenset({"schema_version", "ts", "event"})
"""Field names a caller may not pass: the ledger writes them itself."""

REDACTED_FIELDS = frozenset({"text", "content", "messages", "summary", "prompt"})
"""Field names (at any depth, case-insensitive) replaced by a digest when ``redact=True``."""

MASK = _MASK
"""What a secret-looking substring of a string value is replaced with (``"[REDACTED]"``).
Which field names are credentials is :func:`is_secret_key` (``compactor._redact``'s)."""


def mask_secrets(text: str) -> str:
    """``text`` with every secret replaced by ``MASK``, by the package's one set of rules
    (:func:`compactor._redact.redact`: key assignments such as ``OPENAI_API_KEY=...`` or
    ``{"api_key": ...}``, ``Bearer`` credentials, ``sk-...``/AWS/GitHub key shapes, URL
    passwords). Idempotent; ``sha256:<hex>`` hashes and ordinary prose are left alone."""
    return _redact_text(text)


def format_ts(now: datetime) -> str:
    """UTC ISO 8601 with millisecond precision and a ``Z``: ``2025-01-31T23:59:59.123Z``.

    Raises:
        ConfigError: ``now`` is naive (the ledger's ``clock`` must return aware datetimes).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ConfigError("the ledger clock returned a naive datetime; return an aware one "
                          "(e.g. datetime.now(timezone.utc))", field="clock")
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:23] + "Z"


def ts_day(ts: str) -> str:
    """The ``YYYYMMDD`` UTC day of a ``ts`` written by :func:`format_ts`."""
    return ts[0:4] + ts[5:7] + ts[8:10]


def digest(value: Any) -> dict[str, Any]:
    """``{"sha256": hex, "chars": N}`` of a string (its UTF-8 bytes, N = its length) or of
    any other JSON value (its canonical JSON text: sorted keys, compact, N = that text's length)."""
    text = value if isinstance(value, str) else json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
            "chars": len(text)}


def _clean(value: Any, path: str, event: str, redact: bool) -> Any:
    """A plain JSON copy of ``value`` with secrets removed (and content redacted).

    Raises LedgerFieldError naming ``path`` for anything JSON cannot carry."""
    if value is None or isinstance(value, (bool, str)):
        return mask_secrets(value) if isinstance(value, str) else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LedgerFieldError(f"field {path!r} of event {event!r} is {value!r}, which JSON "
                                   "cannot represent", field=path, event=event)
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise LedgerFieldError(
                    f"field {path!r} of event {event!r} has a non-string key {key!r} "
                    f"({type(key).__name__}); JSON object keys are strings",
                    field=path, event=event)
            if is_secret_key(key):
                continue
            child = f"{path}.{key}"
            if redact and key.lower() in REDACTED_FIELDS:
                _clean(item, child, event, False)  # validate before hashing
                out[mask_secrets(key)] = digest(item)
            else:
                out[mask_secrets(key)] = _clean(item, child, event, redact)
        return dict(sorted(out.items()))
    if isinstance(value, (list, tuple)):
        return [_clean(item, f"{path}[{i}]", event, redact) for i, item in enumerate(value)]
    raise LedgerFieldError(f"field {path!r} of event {event!r} is a {type(value).__name__}, "
                           "which is not JSON-serialisable; pass str, int, float, bool, None, "
                           "list or dict", field=path, event=event)


def build_record(event: str, fields: Mapping[str, Any], *, now: datetime,
                 redact: bool = False) -> dict[str, Any]:
    """The record written for one ``emit``: common keys, then the event fields sorted.

    Keys that look like credentials are dropped at any depth; secret-looking substrings
    are masked in every string; with ``redact=True`` the fields named in
    ``REDACTED_FIELDS`` become :func:`digest` objects.

    Raises:
        LedgerFieldError: ``event`` is not a non-empty string, ``fields`` is not a mapping,
            a field uses a reserved name, or a value is not JSON-serialisable.
        ConfigError: ``now`` is naive.
    """
    if not isinstance(event, str) or not event:
        raise LedgerFieldError(f"the event name must be a non-empty string, got {event!r}",
                               field=None, event=None)
    if not isinstance(fields, Mapping):
        raise LedgerFieldError(f"the fields of event {event!r} must be a mapping, got "
                               f"{type(fields).__name__}", field=None, event=event)
    for name in RESERVED_FIELDS.intersection(fields):
        raise LedgerFieldError(f"field {name!r} of event {event!r} is reserved: the ledger "
                               "writes it itself", field=name, event=event)
    body: dict[str, Any] = {}
    for key, value in fields.items():
        if not isinstance(key, str):
            raise LedgerFieldError(f"event {event!r} has a non-string field name {key!r}",
                                   field=None, event=event)
        if is_secret_key(key):
            continue
        if redact and key.lower() in REDACTED_FIELDS:
            _clean(value, key, event, False)
            body[mask_secrets(key)] = digest(value)
        else:
            body[mask_secrets(key)] = _clean(value, key, event, redact)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "ts": format_ts(now),
        "event": mask_secrets(event),
        "session_id": body.pop("session_id", None),
        "agent_id": body.pop("agent_id", None),
    }
    for key in sorted(body):
        record[key] = body[key]
    return record


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One ``\\n``-terminated line of compact UTF-8 JSON, keys in ``record``'s order.

    ``record`` must come from :func:`build_record` (plain JSON values only). Strings with
    lone surrogates are written with ``\\u`` escapes instead of raw UTF-8."""
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


class BadLineError(ValueError):
    """Internal: a line is not a record. ``kind`` is ``"torn"`` (incomplete or not JSON)
    or ``"invalid"`` (JSON, but not a ledger record); ``reason`` is a short code."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def decode_line(raw: bytes) -> dict[str, Any]:
    """The record on one line (``raw`` includes its ``\\n`` when it has one).

    Raises:
        BadLineError: ``torn`` with reason ``no_newline`` or ``bad_json``; ``invalid`` with
            reason ``empty``, ``not_object``, ``missing_keys`` or ``bad_types``.
    """
    if not raw.endswith(b"\n"):
        raise BadLineError("torn", "no_newline")
    if not raw.strip():
        raise BadLineError("invalid", "empty")
    try:
        record = json.loads(raw)
    except ValueError:
        raise BadLineError("torn", "bad_json") from None
    if not isinstance(record, dict):
        raise BadLineError("invalid", "not_object")
    if not all(key in record for key in COMMON_KEYS):
        raise BadLineError("invalid", "missing_keys")
    version, ts, event = record["schema_version"], record["ts"], record["event"]
    if (not isinstance(version, int) or isinstance(version, bool) or not isinstance(event, str)
            or not isinstance(ts, str) or len(ts) < 10 or not ts[0:4].isdigit()):
        raise BadLineError("invalid", "bad_types")
    return record
