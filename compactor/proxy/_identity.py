"""Who is calling, and which session a call belongs to (pure: no I/O).

A proxy sees fresh JSON on every call, so a session is named from what the call carries:

* the **tenant**: a digest of the caller's credential headers (``x-api-key``,
  ``authorization``, ``api-key``), so two API keys never share a session; the credential
  itself is never kept, only ``sha256`` of it;
* the **session id**: ``NAME~TENANT`` when the caller sends ``x-compactor-session: NAME``,
  else ``auto-FORMAT-DIGEST~TENANT`` where ``DIGEST`` hashes the system prompt and the
  first user message (what stays the same for the whole of one agent's conversation);
* the **agent**: the ``x-compactor-agent`` header, else the proxy's default agent.

``TENANT`` is the first :data:`TENANT_CHARS` hex characters of the credential digest
(48 bits: enough to keep tenants apart, nothing to recover a key from), or ``nokey``
when the call carries no credential (a local model server).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any, Mapping, Sequence

from .._format import Format
from .._store import canonical_json

#: The headers that carry a caller's credentials (lower case). They are forwarded
#: untouched and never logged, stored or recorded.
CREDENTIAL_HEADERS = ("x-api-key", "authorization", "api-key")
#: Header naming the session (optional).
SESSION_HEADER = "x-compactor-session"
#: Header naming the agent (for budgets and the status view; optional).
AGENT_HEADER = "x-compactor-agent"
#: Header carrying the proxy's shared token (required when the proxy listens beyond
#: loopback).
TOKEN_HEADER = "x-compactor-token"
#: Hex characters of the credential digest kept in a session id.
TENANT_CHARS = 12
#: The tenant of a call without credentials.
NO_KEY = "nokey"
#: Longest session or agent name taken from a header, characters.
MAX_NAME_CHARS = 200


def tenant_of(headers: Mapping[str, str]) -> str:
    """The tenant tag of a call: ``sha256`` over its credential header values (in
    :data:`CREDENTIAL_HEADERS` order), first :data:`TENANT_CHARS` hex characters; ``nokey``
    when it has none. ``headers`` has lower-case names."""
    parts = [f"{h}={headers[h]}" for h in CREDENTIAL_HEADERS if headers.get(h)]
    if not parts:
        return NO_KEY
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:TENANT_CHARS]


def _clean_name(value: str | None) -> str | None:
    """A header value usable as a name: stripped, printable, at most
    :data:`MAX_NAME_CHARS` characters (longer or empty: None)."""
    if value is None:
        return None
    v = value.strip()
    if not v or len(v) > MAX_NAME_CHARS or not v.isprintable():
        return None
    return v


def first_user(messages: Sequence[Any]) -> Any:
    """The first message with role ``user`` (the first message when none is)."""
    for m in messages:
        if isinstance(m, Mapping) and m.get("role") == "user":
            return m
    return messages[0] if messages else None


def session_id_for(headers: Mapping[str, str], body: Mapping[str, Any], fmt: Format) -> str:
    """The session id of a call (see the module docs). ``headers`` has lower-case names;
    ``body`` is the parsed request. Pure.

    For the OpenAI format the system prompt is the leading ``system``/``developer``
    messages; for Anthropic it is the ``system`` field.
    """
    tenant = tenant_of(headers)
    name = _clean_name(headers.get(SESSION_HEADER))
    if name is not None:
        return f"{name}~{tenant}"
    messages = body.get("messages") or []
    if fmt is Format.OPENAI:
        system: Any = list(itertools.takewhile(
            lambda m: isinstance(m, Mapping) and m.get("role") in ("system", "developer"),
            messages))
    else:
        system = body.get("system")
    seed = canonical_json({"system": system, "first_user": first_user(messages),
                           "tenant": tenant})
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]
    return f"auto-{fmt.value}-{digest}~{tenant}"


def agent_for(headers: Mapping[str, str], default: str | None) -> str | None:
    """The agent of a call: the ``x-compactor-agent`` header, else ``default``."""
    return _clean_name(headers.get(AGENT_HEADER)) or default


__all__ = ["AGENT_HEADER", "CREDENTIAL_HEADERS", "NO_KEY", "SESSION_HEADER", "TENANT_CHARS",
           "TOKEN_HEADER", "agent_for", "first_user", "session_id_for", "tenant_of"]
