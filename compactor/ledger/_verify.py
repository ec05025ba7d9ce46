"""Checking, and optionally repairing, a ledger's files.

``verify`` reads every segment as :func:`read_records` does and reports every torn or
invalid line. With ``repair=True`` it also:

* cuts a torn last line off the active segment and off closed *plain* segments (under
  the append lock and the compression lock respectively, re-checking the tail there, so
  a writer that healed or extended the file meanwhile is left alone). Every complete
  record before the torn line stays.
* finishes interrupted compressions (removes temp files, redoes ``P`` -> ``P.gz``).

Torn lines in the middle of a file (our writer cannot produce one; it heals a torn tail
before appending) and invalid lines are reported and never deleted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compactor.ledger._compress import Repair, finish_compression
from compactor.ledger._files import FileMutex, last_line_end
from compactor.ledger._reader import BadLine, read_records
from compactor.ledger._segments import gz_lock_path, list_segments, lock_path


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    Attributes:
        path: the active segment checked.
        exists: whether any file of the ledger exists.
        files: segment files read, in order.
        records: complete, valid records found.
        torn: torn lines found (before any repair).
        invalid: invalid lines found (never repaired).
        pending: interrupted or pending compression steps found (plain closed
            segments, leftover temp files); readers cope with these, so they are not
            problems, and ``repair=True`` finishes them.
        repairs: what ``repair=True`` changed.
    """

    path: str
    exists: bool
    files: tuple[str, ...]
    records: int
    torn: tuple[BadLine, ...]
    invalid: tuple[BadLine, ...]
    pending: tuple[str, ...]
    repairs: tuple[Repair, ...]

    @property
    def unrepaired(self) -> tuple[BadLine, ...]:
        """Torn and invalid lines still in the files after this run."""
        cut = {(r.file, r.offset) for r in self.repairs if r.action == "truncate_torn_tail"}
        return tuple(b for b in self.torn + self.invalid if (b.file, b.offset) not in cut)

    @property
    def ok(self) -> bool:
        """No torn or invalid lines remain (the CLI exits 0 exactly when this holds)."""
        return not self.unrepaired

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "exists": self.exists, "ok": self.ok, "files": list(self.files),
            "records": self.records, "torn": [b.to_dict() for b in self.torn],
            "invalid": [b.to_dict() for b in self.invalid], "pending": list(self.pending),
            "repairs": [r.__dict__ for r in self.repairs],
            "unrepaired": [b.to_dict() for b in self.unrepaired],
        }


def _cut_torn_tail(path: Path, offset: int) -> Repair | None:
    """Truncate ``path`` to its last complete line if it still ends without ``\\n`` and
    that line starts at ``offset``. Caller holds the lock guarding ``path``."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return None  # healed by a writer meanwhile
        keep = last_line_end(fd, size)
        if keep != offset:
            return None  # not the line we judged; leave it for the next run
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return Repair(str(path), "truncate_torn_tail", keep, size - keep)
    finally:
        os.close(fd)


def verify(path: str | os.PathLike[str], repair: bool = False) -> VerifyReport:
    """Check that every line of every segment of the ledger at ``path`` is a complete,
    valid record; with ``repair=True``, cut torn tails and finish compressions.

    Args:
        path: the active segment, e.g. ``compactor-ledger/ledger.jsonl``.
        repair: fix what can be fixed without losing a complete record.

    Raises:
        OSError: a file cannot be read, or (with ``repair``) changed.
    """
    active = Path(os.path.abspath(os.fspath(path)))
    listing = list_segments(active)
    exists = active.exists() or bool(listing.segments)
    pending = [str(t) for t in listing.temps] + [
        str(s.plain) for s in listing.segments if s.plain is not None]
    records = read_records(active)
    count = sum(1 for _ in records)
    report = records.report
    repairs: list[Repair] = []
    if repair:
        tails = [b for b in report.torn if b.at_tail and b.reason == "no_newline"]
        active_tails = [b for b in tails if b.file == str(active)]
        plain_tails = [b for b in tails if b.file != str(active) and not b.file.endswith(".gz")]
        gz_mutex = FileMutex(gz_lock_path(active))
        try:
            gz_mutex.acquire()
            for bad in plain_tails:
                fixed = _cut_torn_tail(Path(bad.file), bad.offset)
                if fixed is not None:
                    repairs.append(fixed)
            gz_mutex.release()
        finally:
            gz_mutex.close()
        if active_tails:
            mutex = FileMutex(lock_path(active))
            try:
                mutex.acquire()
                fixed = _cut_torn_tail(active, active_tails[-1].offset)
                if fixed is not None:
                    repairs.append(fixed)
                mutex.release()
            finally:
                mutex.close()
        if pending:
            repairs.extend(finish_compression(active, wait=True))
    return VerifyReport(
        path=str(active), exists=exists, files=tuple(report.files), records=count,
        torn=tuple(report.torn), invalid=tuple(report.invalid), pending=tuple(pending),
        repairs=tuple(repairs))
