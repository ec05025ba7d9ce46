"""Small file-system helpers: private file creation, directory fsync, the cross-process
lock, and finding the last complete line of a file.

The lock is the native ``flock`` that :class:`filelock.FileLock` takes on the same
``<path>.lock`` file, taken with :func:`filelock.lock_descriptor` on a descriptor kept
open for the life of the ledger. ``FileLock.acquire`` opens the lock file and does a
few hundred microseconds of bookkeeping each time (about 200 us per acquire with
filelock 4.2); an append takes the lock once, so the descriptor form keeps appends
fast while staying interoperable: an operator holding ``FileLock("<path>.lock")``
(e.g. during a backup) pauses every writer.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

try:  # filelock >= 3.30
    from filelock import lock_descriptor as _lock_fd
    from filelock import unlock_descriptor as _unlock_fd
except ImportError:  # pragma: no cover - older filelock: the same flock, directly
    import fcntl

    def _lock_fd(fd: int, *, blocking: bool = True, poll_interval: float = 0.05) -> bool:
        if blocking:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

PRIVATE_MODE = 0o600
"""Mode of every file the ledger creates (records can hold sensitive metadata)."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_private(path: Path, flags: int) -> tuple[int, bool]:
    """Open ``path``, creating it with mode 0600 if missing; return ``(fd, created)``.

    A file this call creates is ``fchmod``-ed to 0600 so the umask cannot widen or
    narrow it; an existing file keeps its mode.

    Raises:
        OSError: from ``os.open``.
    """
    flags |= _CLOEXEC
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        except FileExistsError:
            try:
                return os.open(path, flags & ~os.O_CREAT), False
            except FileNotFoundError:  # removed in between: create it
                continue
        try:
            os.fchmod(fd, PRIVATE_MODE)
        except BaseException:
            os.close(fd)
            raise
        return fd, True


def fsync_dir(path: Path) -> None:
    """fsync the directory ``path`` so renames and unlinks in it are durable."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def last_line_end(fd: int, size: int, *, chunk: int = 1 << 16) -> int:
    """Offset just past the last ``\\n`` in the first ``size`` bytes of ``fd`` (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start)
        i = data.rfind(b"\n")
        if i != -1:
            return start + i + 1
        end = start
    return 0


class FileMutex:
    """An exclusive cross-process lock on one lock file (created 0600).

    Not reentrant and not a thread lock: callers hold their own thread lock around it.
    Survives ``fork`` (the child reopens its own descriptor, since a shared descriptor
    would share the lock) and the lock file being deleted (re-opened and re-taken, as
    :class:`filelock.FileLock` does).
    """

    def __init__(self, path: Path, *, poll_s: float = 0.0005) -> None:
        self.path = path
        self._poll_s = poll_s
        self._fd: int | None = None
        self._pid = 0

    def _open(self) -> int:
        self.close()
        fd, _ = open_private(self.path, os.O_RDWR)
        self._fd, self._pid = fd, os.getpid()
        return fd

    def acquire(self, timeout_s: float | None = None) -> bool:
        """Take the lock; wait at most ``timeout_s`` seconds (forever when ``None``,
        one attempt when 0). Returns False on timeout.

        Raises:
            OSError: the lock file cannot be opened or locked.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            fd = self._fd if self._fd is not None and self._pid == os.getpid() else self._open()
            if deadline is None:
                _lock_fd(fd, blocking=True, poll_interval=self._poll_s)
            else:
                while not _lock_fd(fd, blocking=False):
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(self._poll_s)
            if os.fstat(fd).st_nlink > 0:
                return True
            _unlock_fd(fd)  # the lock file was deleted: lock the one the path names now
            self._open()

    def release(self) -> None:
        """Release the lock taken by :meth:`acquire`."""
        if self._fd is not None:
            _unlock_fd(self._fd)

    def close(self) -> None:
        """Close the descriptor (which also releases the lock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # in a forked child this drops only the child's reference

    def __enter__(self) -> FileMutex:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
