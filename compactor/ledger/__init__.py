"""The append-only JSONL ledger: a ``LedgerSink`` that many processes can share.

``Ledger(path).emit(event, fields)`` appends one JSON line; ``read_records(path)``
reads every segment back (plain or gzip, torn lines skipped and reported);
``verify(path, repair=True)`` checks and repairs. See ``docs/ledger.md``.

The CLI wiring lives in ``compactor.ledger._cli.add_ledger_commands``.
"""

from compactor.ledger._codec import SCHEMA_VERSION
from compactor.ledger._compress import Repair
from compactor.ledger._errors import LedgerError, LedgerFieldError
from compactor.ledger._ledger import Ledger
from compactor.ledger._reader import (
    BadLine,
    ReadReport,
    Records,
    follow_records,
    read_records,
    tail_records,
)
from compactor.ledger._stats import LedgerStats, Totals, compute_stats
from compactor.ledger._verify import VerifyReport, verify

__all__ = [
    "BadLine",
    "Ledger",
    "LedgerError",
    "LedgerFieldError",
    "LedgerStats",
    "ReadReport",
    "Records",
    "Repair",
    "SCHEMA_VERSION",
    "Totals",
    "VerifyReport",
    "compute_stats",
    "follow_records",
    "read_records",
    "tail_records",
    "verify",
]
