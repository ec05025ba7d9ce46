"""A ledger sink that never blocks the event loop: events are written by a thread."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Mapping

from .._redact import redact
from .._sink import LedgerSink

log = logging.getLogger("compactor.proxy")

_STOP = object()


class QueuedSink:
    """Hands each event to a background thread that writes it to ``inner`` (e.g. a
    ``compactor.ledger.Ledger``), so ``emit`` returns at once on the event loop. A failed
    write is logged (one redacted line), never raised. :meth:`close` writes what is
    queued and stops the thread (it does not close ``inner``).

    Args:
        inner: the sink written to.
        close_timeout_s: how long :meth:`close` waits for the queue to drain, seconds.
    """

    def __init__(self, inner: LedgerSink, *, close_timeout_s: float = 10.0) -> None:
        self.inner = inner
        self.close_timeout_s = close_timeout_s
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="compactor-proxy-ledger",
                                        daemon=True)
        self._thread.start()

    def emit(self, event: str, fields: Mapping[str, Any]) -> None:
        """Queue one event (returns at once)."""
        self._q.put((event, dict(fields)))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            event, fields = item
            try:
                self.inner.emit(event, fields)
            except Exception as e:  # noqa: BLE001 -- a ledger problem never fails a call
                log.warning("ledger write of %s failed: %s", event,
                            redact(f"{type(e).__name__}: {e}"))

    def close(self) -> None:
        """Write the queued events, then stop the writer thread."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(self.close_timeout_s)


__all__ = ["QueuedSink"]
