"""The ledger sink protocol: where compactions, summarizer retries and fallbacks,
budget alerts and usage records are reported.

A sink has one method. :class:`MemorySink` is the in-memory double used by tests and
by default; the JSONL ledger (``compactor.ledger``) implements the same protocol.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Protocol, runtime_checkable


@runtime_checkable
class LedgerSink(Protocol):
    """Receives one event at a time.

    ``event`` is the event name (``"compaction"``, ``"summarizer_retry"``,
    ``"summarizer_fallback"``, ``"budget_alert"``, ``"usage"``, ``"maintenance"``...);
    ``fields`` are JSON-serialisable event fields (``session_id`` and ``agent_id``
    among them when known). Implementations add ``schema_version`` and ``ts``.
    Must not raise for a well-formed event; must be safe to call from one thread at a time.
    """

    def emit(self, event: str, fields: Mapping[str, Any]) -> None: ...


class MemorySink:
    """Keeps events in a list, in order: ``records`` is ``[{"event": ..., **fields}]``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, event: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            self.records.append({"event": event, **fields})

    def of(self, event: str) -> list[dict[str, Any]]:
        """The records of one event name, in order."""
        return [r for r in self.records if r["event"] == event]


class NullSink:
    """Drops every event."""

    def emit(self, event: str, fields: Mapping[str, Any]) -> None:
        return None
