"""The append-only JSONL ledger: a :class:`~compactor._sink.LedgerSink` that writes files.

Write path of one ``emit`` (the driver; the record itself comes from ``_codec``)::

    build + encode the line (pure; may raise LedgerFieldError, nothing written)
    with the thread lock, with the file lock <path>.lock:
        reopen <path> if it is no longer the file our descriptor points at (rotated)
        cut a torn tail left by a crashed writer back to the last complete line
        rotate if the line would pass rotate_bytes or the UTC day changed
        one write() of the whole line on an O_APPEND descriptor
    fsync per policy; compress the segment just closed (outside the file lock)
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from compactor._errors import ConfigError
from compactor.ledger._codec import build_record, decode_line, encode_record, ts_day
from compactor.ledger._compress import finish_compression
from compactor.ledger._errors import LedgerError
from compactor.ledger._files import FileMutex, fsync_dir, last_line_end, open_private
from compactor.ledger._segments import (
    closed_name,
    list_segments,
    lock_path,
    next_segment,
    stem_of,
)

FsyncPolicy = Literal["interval", "always", "never"]

DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024

# Indirections so tests can inject faults (e.g. a write cut in two halves) and count syncs.
_write = os.write
_fdatasync = getattr(os, "fdatasync", os.fsync)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """Appends one JSON line per event to ``path``; safe for many processes at once.

    Args:
        path: the active segment, e.g. ``compactor-ledger/ledger.jsonl``. Its directory
            is created (mode 0700) when missing. Every file the ledger creates is 0600.
        fsync: ``"interval"`` (default) fsyncs at most once per ``fsync_interval_s`` and
            on :meth:`close` (a background timer syncs a ledger left dirty): a process
            crash loses nothing, because ``emit`` returns after ``write()`` reached the
            kernel; a power failure loses at most about the last ``fsync_interval_s`` of
            records. ``"always"`` fsyncs before each ``emit`` returns (nothing
            acknowledged is lost on power failure; much slower). ``"never"`` leaves
            flushing to the kernel.
        fsync_interval_s: seconds between fsyncs under ``"interval"``; > 0.
        rotate_bytes: size in bytes past which the active segment is closed before the
            next append (a single larger record gets a segment of its own); >= 1.
        rotate_daily: also close the active segment when the UTC day of the record
            being written is later than the day of the segment's first record.
        redact: replace fields named text/content/messages/summary/prompt (at any
            depth) by ``{"sha256": ..., "chars": N}``. Credentials are dropped or masked
            whatever this says.
        lock: take ``<path>.lock`` around each append and rotation. Only turn it off
            when a single process (and a single ``Ledger``) writes the file.
        clock: returns the current time as an aware datetime; defaults to UTC now.

    Raises:
        ConfigError: an argument is out of range.
        LedgerError: the ledger file cannot be created or opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: FsyncPolicy = "interval",
                 fsync_interval_s: float = 1.0, rotate_bytes: int = DEFAULT_ROTATE_BYTES,
                 rotate_daily: bool = True, redact: bool = False, lock: bool = True,
                 clock: Callable[[], datetime] | None = None) -> None:
        if fsync not in ("interval", "always", "never"):
            raise ConfigError(f"fsync must be 'interval', 'always' or 'never', got {fsync!r}",
                              field="fsync")
        if not isinstance(fsync_interval_s, (int, float)) or not fsync_interval_s > 0:
            raise ConfigError(f"fsync_interval_s must be a number of seconds > 0, got "
                              f"{fsync_interval_s!r}", field="fsync_interval_s")
        if not isinstance(rotate_bytes, int) or isinstance(rotate_bytes, bool) or rotate_bytes < 1:
            raise ConfigError(f"rotate_bytes must be an int >= 1 (bytes), got {rotate_bytes!r}",
                              field="rotate_bytes")
        self.path = Path(os.path.abspath(os.fspath(path)))
        self.fsync: FsyncPolicy = fsync
        self.fsync_interval_s = float(fsync_interval_s)
        self.rotate_bytes = rotate_bytes
        self.rotate_daily = rotate_daily
        self.redact = redact
        self._clock = clock or _utc_now
        self._mutex = FileMutex(lock_path(self.path)) if lock else None
        self._tlock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._id: tuple[int, int] | None = None
        self._known_end: int | None = None  # size right after our last append
        self._day: tuple[tuple[int, int], str | None] | None = None  # (file id, first-record day)
        self._dirty = False
        self._last_sync = time.monotonic()
        self._timer: threading.Timer | None = None
        self._closed = False
        try:
            if not self.path.parent.exists():
                os.makedirs(self.path.parent, mode=0o700, exist_ok=True)
                os.chmod(self.path.parent, 0o700)  # whatever the umask
            with self._tlock:
                self._open()
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc

    # -- public -------------------------------------------------------------------

    def emit(self, event: str, fields: Mapping[str, Any]) -> None:
        """Append one record; returns once it is written (and fsynced under ``"always"``).

        Raises:
            LedgerFieldError: a field is not JSON-serialisable or is reserved; nothing
                is written.
            ConfigError: the clock returned a naive datetime; nothing is written.
            LedgerError: the ledger is closed, or the file system refused the write
                (a partial line is cut back off).
        """
        record = build_record(event, fields, now=self._clock(), redact=self.redact)
        line = encode_record(record)
        day = ts_day(record["ts"])
        with self._tlock:
            if self._closed:
                raise LedgerError(f"ledger {self.path} is closed")
            try:
                if self._mutex is not None:
                    self._mutex.acquire()
                try:
                    rotated = self._append_locked(line, day)
                finally:
                    if self._mutex is not None:
                        self._mutex.release()
                self._after_append()
            except OSError as exc:
                raise LedgerError(f"cannot append to ledger {self.path}: {exc}") from exc
        if rotated:
            try:
                finish_compression(self.path, wait=False)
            except OSError:
                pass  # the segment stays plain (readers cope); the next pass retries

    def close(self) -> None:
        """fsync (unless ``fsync="never"``) and close. Idempotent; ``emit`` afterwards
        raises :class:`LedgerError`."""
        with self._tlock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close_fd()
            if self._mutex is not None:
                self._mutex.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, fsync={self.fsync!r})"

    # -- internals (called with self._tlock held) ---------------------------------

    def _open(self) -> None:
        fd, created = open_private(self.path, os.O_RDWR | os.O_APPEND)
        st = os.fstat(fd)
        self._fd, self._pid, self._id = fd, os.getpid(), (st.st_dev, st.st_ino)
        self._known_end = None
        if created and self.fsync != "never":
            fsync_dir(self.path.parent)  # the new name must survive a power cut too

    def _forked(self) -> None:
        """In a forked child: drop the parent's descriptor and timer state (the child
        syncs and rotates through descriptors of its own)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # the parent's descriptor stays open in the parent
            except OSError:
                pass
        self._timer, self._dirty = None, False

    def _close_fd(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._dirty and self.fsync != "never" and self._pid == os.getpid():
                _fdatasync(fd)
            self._dirty = False
        finally:
            os.close(fd)

    def _ensure_current(self) -> None:
        """Point our descriptor at the file named ``path`` now (another process may have
        rotated it away); called under the file lock, so the answer stays true."""
        if self._fd is not None and self._pid != os.getpid():
            self._forked()
        if self._fd is None:
            self._open()
            return
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._id:
                return
        except FileNotFoundError:
            pass
        self._close_fd()
        self._open()

    def _append_locked(self, line: bytes, day: str) -> bool:
        self._ensure_current()
        size = self._heal_tail()
        rotated = False
        if size > 0 and self._should_rotate(size, len(line), day):
            self._rotate(day)
            size, rotated = 0, True
        self._write_line(line, size)
        if size == 0:
            assert self._id is not None
            self._day = (self._id, day)
        return rotated

    def _write_line(self, line: bytes, size: int) -> None:
        assert self._fd is not None
        view, done = memoryview(line), 0
        try:
            while done < len(line):
                done += _write(self._fd, view[done:])
        except BaseException:
            if done:
                try:
                    os.ftruncate(self._fd, size)
                except OSError:
                    pass
            raise
        self._known_end = size + len(line)

    def _heal_tail(self) -> int:
        """Cut a torn last line (a writer died mid-write) back to the last complete line,
        and record that in a ``maintenance`` record. Returns the file size after that."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0 or size == self._known_end or os.pread(self._fd, 1, size - 1) == b"\n":
            return size
        keep = last_line_end(self._fd, size)
        torn = os.pread(self._fd, size - keep, keep)
        os.ftruncate(self._fd, keep)
        note = encode_record(build_record("maintenance", {
            "action": "truncate_torn_tail", "file": self.path.name, "offset": keep,
            "length": size - keep, "sha256": hashlib.sha256(torn).hexdigest(),
        }, now=self._clock()))
        self._write_line(note, keep)
        return keep + len(note)

    def _segment_day(self) -> str | None:
        """The UTC day of the active segment's first record (cached per file)."""
        assert self._fd is not None and self._id is not None
        if self._day is not None and self._day[0] == self._id:
            return self._day[1]
        head, end = b"", -1
        while end == -1 and len(head) < (1 << 26):
            chunk = os.pread(self._fd, 1 << 16, len(head))
            if not chunk:
                break
            end = chunk.find(b"\n")
            end = -1 if end == -1 else len(head) + end
            head += chunk
        day: str | None = None
        if end != -1:
            try:
                day = ts_day(decode_line(head[: end + 1])["ts"])
            except ValueError:
                day = None  # unreadable first line: only size rotation applies
        self._day = (self._id, day)
        return day

    def _should_rotate(self, size: int, line_len: int, day: str) -> bool:
        if size + line_len > self.rotate_bytes:
            return True
        if not self.rotate_daily:
            return False
        first = self._segment_day()
        return first is not None and day > first

    def _rotate(self, day: str) -> None:
        """Rename the active segment to its closed name and start a new one (under the
        file lock; compression happens after the lock is released)."""
        first = self._segment_day() or day
        listing = list_segments(self.path)
        seg_day, seq = next_segment([s.key for s in listing.segments], first)
        closed = self.path.with_name(closed_name(stem_of(self.path), seg_day, seq))
        os.rename(self.path, closed)
        self._close_fd()
        self._open()  # creates the new active file (and fsyncs the directory)

    def _after_append(self) -> None:
        if self.fsync == "never":
            return
        assert self._fd is not None
        now = time.monotonic()
        if self.fsync == "always" or now - self._last_sync >= self.fsync_interval_s:
            _fdatasync(self._fd)
            self._dirty, self._last_sync = False, now
            return
        self._dirty = True
        if self._timer is None:
            delay = self.fsync_interval_s - (now - self._last_sync)
            self._timer = threading.Timer(delay, self._sync_due)
            self._timer.daemon = True
            self._timer.start()

    def _sync_due(self) -> None:
        with self._tlock:
            self._timer = None
            if self._closed or not self._dirty or self._fd is None or self._pid != os.getpid():
                return
            try:
                _fdatasync(self._fd)
            except OSError:
                return  # the next emit or close tries again
            self._dirty, self._last_sync = False, time.monotonic()
