"""Segment file naming: which files make up a ledger, and in what order.

The active segment is the ledger path itself (``ledger.jsonl``). A closed segment is
``<stem>.<YYYYMMDD>-<seq>.jsonl`` (then ``.jsonl.gz``), where ``stem`` is the ledger
file name without ``.jsonl``, ``YYYYMMDD`` the UTC day of its first record and ``seq``
counts from 1 within that day (zero-padded to 4 digits; more digits when needed).
``.<closed name>.gz.tmp`` is a compression in progress. Segments sort by
``(day, seq)``; names never go backwards (see :func:`next_segment`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    """One closed segment: the forms it exists in right now."""

    day: str
    seq: int
    plain: Path | None
    gz: Path | None

    @property
    def key(self) -> tuple[str, int]:
        return (self.day, self.seq)


@dataclass(frozen=True)
class Listing:
    """The files of a ledger found in one directory listing."""

    segments: tuple[Segment, ...]
    temps: tuple[Path, ...]


def stem_of(active: Path) -> str:
    """The stem closed segments are named after: ``ledger.jsonl`` -> ``ledger``."""
    name = active.name
    return name[: -len(".jsonl")] if name.endswith(".jsonl") and len(name) > 6 else name


def closed_name(stem: str, day: str, seq: int) -> str:
    """``<stem>.<YYYYMMDD>-<seq>.jsonl``."""
    return f"{stem}.{day}-{seq:04d}.jsonl"


def gz_name(plain_name: str) -> str:
    return plain_name + ".gz"


def temp_name(plain_name: str) -> str:
    return "." + plain_name + ".gz.tmp"


def lock_path(active: Path) -> Path:
    """``<path>.lock``: serialises appends, rotation and repairs."""
    return active.with_name(active.name + ".lock")


def gz_lock_path(active: Path) -> Path:
    """``<path>.gz.lock``: serialises compression of closed segments."""
    return active.with_name(active.name + ".gz.lock")


def parse_listing(active: Path, names: list[str]) -> Listing:
    """Group directory entries into the closed segments of ``active``, sorted by
    ``(day, seq)``, and the leftover compression temp files. Other names are ignored."""
    stem = re.escape(stem_of(active))
    seg_re = re.compile(rf"^{stem}\.(\d{{8}})-(\d+)\.jsonl(\.gz)?$")
    tmp_re = re.compile(rf"^\.{stem}\.(\d{{8}})-(\d+)\.jsonl\.gz\.tmp$")
    found: dict[tuple[str, int], list[Path | None]] = {}
    temps: list[Path] = []
    for name in names:
        if name == active.name:
            continue
        m = seg_re.match(name)
        if m:
            forms = found.setdefault((m.group(1), int(m.group(2))), [None, None])
            forms[1 if m.group(3) else 0] = active.with_name(name)
        elif tmp_re.match(name):
            temps.append(active.with_name(name))
    segments = tuple(Segment(day, seq, forms[0], forms[1])
                     for (day, seq), forms in sorted(found.items()))
    return Listing(segments, tuple(sorted(temps)))


def list_segments(active: Path) -> Listing:
    """:func:`parse_listing` of the directory holding ``active`` (empty when it is missing)."""
    try:
        names = os.listdir(active.parent)
    except FileNotFoundError:
        names = []
    return parse_listing(active, names)


def next_segment(existing: list[tuple[str, int]], day: str) -> tuple[str, int]:
    """The ``(day, seq)`` for the next closed segment whose first record is from ``day``.

    Never sorts before an existing segment: if the clock went backwards (or another
    process's clock is behind), the new segment takes the latest existing day."""
    if not existing:
        return (day, 1)
    last_day, last_seq = max(existing)
    if day > last_day:
        return (day, 1)
    return (last_day, last_seq + 1)
