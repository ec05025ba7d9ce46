"""Reading a ledger: every segment in order, plain or gzip, tolerating torn lines.

A reader takes a snapshot under ``<path>.lock`` (the list of closed segments, an open
descriptor on the active segment and its size), then reads without the lock: closed
segments never change content (only plain -> gzip form), and the active segment is
read only up to the snapshot size, so a line being appended is never mistaken for a
torn one. When the lock cannot be taken (a read-only copy of a ledger), the reader
reads without it.
"""

from __future__ import annotations

import gzip
import os
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Callable, Iterator, cast

from compactor.ledger._codec import BadLineError, decode_line, format_ts, ts_day
from compactor.ledger._files import FileMutex
from compactor.ledger._segments import Segment, list_segments, lock_path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BadLine:
    """A line that is not a record.

    Attributes:
        file: path of the segment file it is in.
        offset: byte offset of the line's first byte in the segment (in the
            decompressed content for a ``.gz`` segment).
        length: length of the line in bytes, its ``\\n`` included when it has one.
        kind: ``"torn"`` (no ``\\n``, not JSON, or a cut-off gzip stream) or
            ``"invalid"`` (JSON, but not a ledger record).
        reason: ``no_newline``, ``bad_json``, ``gzip_truncated``, ``read_error``,
            ``empty``, ``not_object``, ``missing_keys`` or ``bad_types``.
        at_tail: it is the last line of its file (the only place a crash can tear one).
    """

    file: str
    offset: int
    length: int
    kind: str
    reason: str
    at_tail: bool

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "offset": self.offset, "length": self.length,
                "kind": self.kind, "reason": self.reason, "at_tail": self.at_tail}


@dataclass
class ReadReport:
    """What a read found, filled in while the records are iterated.

    Attributes:
        files: segment files read, in order.
        records: records yielded (after the ``since`` filter).
        torn: torn lines skipped.
        invalid: invalid lines skipped.
        missing: closed segments that disappeared before they could be read.
    """

    files: list[str] = field(default_factory=list)
    records: int = 0
    torn: list[BadLine] = field(default_factory=list)
    invalid: list[BadLine] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No torn, invalid or missing anything."""
        return not (self.torn or self.invalid or self.missing)


class Records(Iterator[dict[str, Any]]):
    """The records of a ledger, in write order; ``report`` fills in as you iterate."""

    def __init__(self, gen: Iterator[dict[str, Any]], report: ReadReport,
                 cleanup: Callable[[], None]) -> None:
        self._gen = gen
        self._cleanup = cleanup
        self.report = report

    def __iter__(self) -> Records:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._gen)

    def close(self) -> None:
        """Stop early and release the open file (also done when garbage-collected)."""
        self._gen.close()  # type: ignore[attr-defined]
        self._cleanup()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


@dataclass
class _Snapshot:
    active: Path
    segments: tuple[Segment, ...]
    active_fd: int | None
    active_size: int

    def release(self) -> None:
        if self.active_fd is not None:
            fd, self.active_fd = self.active_fd, None
            os.close(fd)


def _snapshot(active: Path) -> _Snapshot:
    """Closed segments and the active segment's descriptor and size, taken under the
    append lock when it can be had within 10 s."""
    segments = list_segments(active).segments
    if not segments and not active.exists():
        return _Snapshot(active, (), None, 0)  # nothing to read; create no lock file
    mutex = FileMutex(lock_path(active))
    locked = False
    try:
        try:
            locked = mutex.acquire(timeout_s=10.0)
        except OSError:
            locked = False  # e.g. a read-only copy of a ledger: read without the lock
        segments = list_segments(active).segments
        try:
            fd: int | None = os.open(active, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            fd = None
        size = os.fstat(fd).st_size if fd is not None else 0
        if locked:
            mutex.release()
    finally:
        mutex.close()
    return _Snapshot(active, segments, fd, size)


def _iter_lines(stream: IO[bytes], limit: int | None) -> Iterator[tuple[int, bytes | None]]:
    """``(offset, line)`` for each line (``\\n`` included; the last may lack it). A
    ``None`` line at the end means the stream broke off there (a cut gzip file)."""
    buf, base, remaining = b"", 0, limit
    while remaining is None or remaining > 0:
        try:
            chunk = stream.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        except (EOFError, gzip.BadGzipFile, zlib.error):  # a cut or corrupt .gz
            if buf:
                yield base, buf
            yield base + len(buf), None
            return
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        buf += chunk
        start = 0
        while (nl := buf.find(b"\n", start)) != -1:
            yield base + start, buf[start:nl + 1]
            start = nl + 1
        base += start
        buf = buf[start:]
    if buf:
        yield base, buf


def _read_stream(name: str, stream: IO[bytes], limit: int | None, report: ReadReport,
                 since_ts: str | None, reason_on_break: str) -> Iterator[dict[str, Any]]:
    pending: tuple[int, bytes] | None = None

    def judge(offset: int, raw: bytes, at_tail: bool) -> dict[str, Any] | None:
        try:
            record = decode_line(raw)
        except BadLineError as bad:
            line = BadLine(name, offset, len(raw), bad.kind, bad.reason, at_tail)
            (report.torn if bad.kind == "torn" else report.invalid).append(line)
            return None
        if since_ts is not None and record["ts"] < since_ts:
            return None
        report.records += 1
        return record

    for offset, raw in _iter_lines(stream, limit):
        if pending is not None:
            rec = judge(*pending, at_tail=raw is None)
            if rec is not None:
                yield rec
            pending = None
        if raw is None:
            report.torn.append(BadLine(name, offset, 0, "torn", reason_on_break, True))
            return
        pending = (offset, raw)
    if pending is not None:
        rec = judge(*pending, at_tail=True)
        if rec is not None:
            yield rec


def _open_segment(seg: Segment) -> tuple[str, IO[bytes], str] | None:
    """Open a closed segment, preferring the plain form; ``None`` when both are gone."""
    if seg.plain is not None:
        try:
            return str(seg.plain), open(seg.plain, "rb"), "read_error"
        except FileNotFoundError:
            pass  # compressed meanwhile: its .gz exists now
        gz_path = seg.plain.with_name(seg.plain.name + ".gz")
    else:
        assert seg.gz is not None
        gz_path = seg.gz
    try:
        return str(gz_path), cast(IO[bytes], gzip.open(gz_path, "rb")), "gzip_truncated"
    except FileNotFoundError:
        return None


def _generate(snap: _Snapshot, report: ReadReport, since: datetime | None,
              segments: tuple[Segment, ...]) -> Iterator[dict[str, Any]]:
    since_ts = format_ts(since) if since is not None else None
    try:
        for seg in segments:
            opened = _open_segment(seg)
            if opened is None:
                report.missing.append(f"{seg.day}-{seg.seq}")
                continue
            name, stream, on_break = opened
            report.files.append(name)
            with stream:
                yield from _read_stream(name, stream, None, report, since_ts, on_break)
        if snap.active_fd is not None:
            report.files.append(str(snap.active))
            with os.fdopen(snap.active_fd, "rb", closefd=True) as stream:
                snap.active_fd = None
                yield from _read_stream(str(snap.active), stream, snap.active_size, report,
                                        since_ts, "read_error")
    finally:
        snap.release()


def _skip_before(segments: tuple[Segment, ...], since: datetime | None) -> tuple[Segment, ...]:
    """Drop closed segments that end before ``since``: segment i holds records from its
    own day up to the day of segment i+1, so it is skipped when segment i+1 starts more
    than a day before ``since`` (a day of slack for clock skew between writers)."""
    if since is None:
        return segments
    cutoff = ts_day(format_ts(since - timedelta(days=1)))
    keep_from = 0
    for i in range(len(segments) - 1):
        if segments[i + 1].day < cutoff:
            keep_from = i + 1
    return segments[keep_from:]


def read_records(path: str | os.PathLike[str], *, since: datetime | None = None) -> Records:
    """All records of the ledger whose active segment is ``path``, oldest first: closed
    segments (plain or ``.gz``) in ``(day, seq)`` order, then the active one.

    Torn and invalid lines are skipped and listed in the returned iterator's
    ``report`` (a :class:`ReadReport`) as iteration reaches them. When a segment
    exists both plain and gzipped (a compression interrupted by a crash), the plain
    file is read and the ``.gz`` ignored. A ledger that does not exist yields nothing.

    Args:
        path: the active segment, e.g. ``compactor-ledger/ledger.jsonl``.
        since: only records with ``ts`` at or after this aware datetime.

    Raises:
        ConfigError: ``since`` is naive.
        OSError: a segment cannot be read (other than vanishing during the read).
    """
    active = Path(os.path.abspath(os.fspath(path)))
    if since is not None:
        format_ts(since)  # validate before taking the snapshot
    snap = _snapshot(active)
    report = ReadReport()
    gen = _generate(snap, report, since, _skip_before(snap.segments, since))
    return Records(gen, report, snap.release)


def tail_records(path: str | os.PathLike[str], n: int, *,
                 event: str | None = None) -> list[dict[str, Any]]:
    """The last ``n`` records (of event ``event`` only, when given), oldest first.
    Reads segments newest first and stops once it has ``n``; skips bad lines.

    Raises:
        OSError: a segment cannot be read.
    """
    if n <= 0:
        return []
    active = Path(os.path.abspath(os.fspath(path)))
    snap = _snapshot(active)
    found: list[list[dict[str, Any]]] = []
    count = 0
    report = ReadReport()
    try:
        sources: list[Segment | None] = [None, *reversed(snap.segments)]
        for seg in sources:
            if seg is None:
                if snap.active_fd is None:
                    continue
                with os.fdopen(snap.active_fd, "rb", closefd=True) as active_stream:
                    snap.active_fd = None
                    recs = list(_read_stream(str(active), active_stream, snap.active_size,
                                             report, None, "read_error"))
            else:
                opened = _open_segment(seg)
                if opened is None:
                    continue
                name, stream, on_break = opened
                with stream:
                    recs = list(_read_stream(name, stream, None, report, None, on_break))
            if event is not None:
                recs = [r for r in recs if r["event"] == event]
            found.append(recs)
            count += len(recs)
            if count >= n:
                break
    finally:
        snap.release()
    out = [r for recs in reversed(found) for r in recs]
    return out[-n:]


def _decode_all(data: bytes) -> Iterator[dict[str, Any]]:
    for raw in data.splitlines(keepends=True):
        try:
            yield decode_line(raw)
        except BadLineError:
            continue


def follow_records(path: str | os.PathLike[str], *, poll_s: float = 0.5,
                   stop: Callable[[], bool] | None = None,
                   from_start: bool = False) -> Iterator[dict[str, Any]]:
    """Records appended to the ledger from now on -- from this call, not from the first
    ``next()``: the ledger is looked at here, so a caller that prints the tail after
    calling this misses nothing appended meanwhile -- (or from the start of the active
    segment with ``from_start=True``), across rotations, until ``stop()`` is true.

    Polls every ``poll_s`` seconds when idle. When the active segment was rotated, it
    finishes the old file, reads any segment closed since (several rotations can happen
    between two polls), then continues with the new active file. Best effort, for
    display: bad lines are skipped silently; :func:`read_records` is the checked view.

    Raises:
        OSError: a segment cannot be read.
    """
    active = Path(os.path.abspath(os.fspath(path)))
    snap = _snapshot(active)
    seen = {s.key for s in snap.segments}
    fd, pos = snap.active_fd, (0 if from_start else snap.active_size)
    snap.active_fd = None
    return _follow(active, fd, pos, seen, poll_s, stop)


def _follow(active: Path, fd: int | None, pos: int, seen: set[Any], poll_s: float,
            stop: Callable[[], bool] | None) -> Iterator[dict[str, Any]]:
    buf = b""
    try:
        while True:
            if stop is not None and stop():
                return
            data = os.pread(fd, _CHUNK, pos) if fd is not None else b""
            if data:
                pos += len(data)
                buf += data
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    yield from _decode_all(raw + b"\n")
                continue
            try:
                st = os.stat(active)
                moved = fd is None or (st.st_dev, st.st_ino) != (
                    os.fstat(fd).st_dev, os.fstat(fd).st_ino)
            except FileNotFoundError:
                moved = False  # mid-rotation (or not created yet): look again next poll
            if not moved:
                if fd is not None and os.fstat(fd).st_size < pos:
                    pos, buf = os.fstat(fd).st_size, b""  # a torn tail was cut off
                time.sleep(poll_s)
                continue
            now = _snapshot(active)
            fresh = [s for s in now.segments if s.key not in seen]
            if fd is not None:  # our file is the first segment closed since
                while rest := os.pread(fd, _CHUNK, pos):
                    pos += len(rest)
                    buf += rest
                yield from _decode_all(buf)
                os.close(fd)
                fresh = fresh[1:]
            for seg in fresh:
                opened = _open_segment(seg)
                if opened is not None:
                    with opened[1] as stream:
                        for _, line in _iter_lines(stream, None):
                            if line is not None:
                                yield from _decode_all(line)
            seen.update(s.key for s in now.segments)
            fd, pos, buf = now.active_fd, 0, b""
            now.active_fd = None
    finally:
        if fd is not None:
            os.close(fd)
