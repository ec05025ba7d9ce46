"""Errors of the JSONL ledger, named by whose fault they are.

:class:`LedgerFieldError` is the caller's: an event field cannot be written as JSON.
:class:`LedgerError` is the ledger's: the file system refused a write, or the ledger is closed.
Bad constructor arguments raise :class:`compactor._errors.ConfigError`. The two ledger
errors are siblings, so code that tolerates a full disk does not also swallow its own bugs.
"""

from __future__ import annotations

from compactor._errors import CompactorError


class LedgerError(CompactorError):
    """The ledger could not append a record (an ``OSError`` from the file system, or
    the ledger was closed). Nothing partial is left behind: a failed append is cut
    back to the last complete line."""


class LedgerFieldError(CompactorError, TypeError):
    """An event field cannot be written: not JSON-serialisable (a set, an object, a
    non-string key, NaN or infinity), or a name the ledger reserves. Nothing is written.

    Attributes:
        field: dotted path of the offending value inside the event fields, with list
            indexes in brackets (e.g. ``"usage.details[2].at"``); ``None`` when the
            fields as a whole (or the event name) are at fault.
        event: the event name passed to ``emit``.
    """

    def __init__(self, message: str, *, field: str | None, event: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.event = event
