"""Compressing closed segments, crash-safely.

For a closed plain segment ``P`` (immutable once renamed away from the active path):
write ``.P.gz.tmp``, fsync it, rename it to ``P.gz``, fsync the directory, unlink ``P``,
fsync the directory. A crash at any point leaves one of: ``P`` alone, ``P`` and a temp
file, ``P`` and ``P.gz`` (both complete), or ``P.gz`` alone. Readers read ``P`` whenever
it exists and ``P.gz`` otherwise, so no record is lost or read twice; the next
compression pass (after a rotation, or ``verify(repair=True)``) removes the temp file
and redoes the ``P`` -> ``P.gz`` step.

Compression runs under ``<path>.gz.lock``, not the append lock, so writers keep
appending while a segment is compressed. It always fsyncs, whatever the ledger's
``fsync`` policy: deleting ``P`` is only safe once ``P.gz`` is durable.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from compactor.ledger._files import FileMutex, fsync_dir, open_private
from compactor.ledger._segments import gz_lock_path, list_segments, temp_name


@dataclass(frozen=True)
class Repair:
    """One change made to the ledger's files by a repair or a compression pass.

    Attributes:
        file: the file changed.
        action: ``"truncate_torn_tail"``, ``"finish_gzip"`` or ``"remove_temp"``.
        offset: for a truncation, the new size in bytes (where the torn line began).
        length: for a truncation, the number of bytes removed.
    """

    file: str
    action: str
    offset: int | None = None
    length: int | None = None


def compress_segment(plain: Path) -> None:
    """Replace closed segment ``plain`` by ``plain.gz`` (see the module docstring).

    Raises:
        OSError: from the file system; the segment is then still readable.
    """
    tmp = plain.with_name(temp_name(plain.name))
    fd, _ = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as raw:
        with open(plain, "rb") as src, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                     compresslevel=6, mtime=0) as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, plain.with_name(plain.name + ".gz"))
    fsync_dir(plain.parent)
    os.unlink(plain)
    fsync_dir(plain.parent)


def finish_compression(active: Path, *, wait: bool) -> list[Repair]:
    """Compress every closed plain segment of the ledger at ``active`` and delete
    leftover temp files. Returns what was done.

    With ``wait=False`` (after a rotation) it gives up at once when another process is
    compressing; that process, the next rotation or ``verify(repair=True)`` finishes the job.

    Raises:
        OSError: from the file system.
    """
    mutex = FileMutex(gz_lock_path(active))
    done: list[Repair] = []
    try:
        if not mutex.acquire(timeout_s=None if wait else 0):
            return done
        for _ in range(100):  # re-list: more segments may close while we work
            listing = list_segments(active)
            for tmp in listing.temps:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    continue
                done.append(Repair(str(tmp), "remove_temp"))
            todo = [s.plain for s in listing.segments if s.plain is not None]
            if not todo:
                break
            for plain in todo:
                compress_segment(plain)
                done.append(Repair(str(plain), "finish_gzip"))
        mutex.release()
    finally:
        mutex.close()
    return done
