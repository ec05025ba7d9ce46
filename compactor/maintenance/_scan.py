"""Read-only views of the store, the archive and the ledger: what exists, how old it is,
how big, and which tier each session is due for. Nothing here writes a byte, so
``maintain --assess``, ``maintain --dry-run`` and ``health`` are built on it alone.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compactor._tokens import HeuristicCounter, TiktokenCounter, TokenCounter
from compactor.maintenance._archive import (
    Entry,
    entries,
    messages_from_payload,
    parse_iso,
    sha256,
)
from compactor.maintenance._config import MaintenanceConfig
from compactor.maintenance._profile import Importance, Profile, Tier, due_tier, importance, profile

#: A file in a live session's folder whose presence marks the session important.
MARK_FILE = "IMPORTANT"
#: Folder (under the store root) holding the maintenance lock, journal, trash and status.
STATE_DIR = ".maintenance"
DAY_S = 86_400.0


def counter_for(cfg: MaintenanceConfig) -> TokenCounter:
    """The token counter the config names."""
    return TiktokenCounter() if cfg.counter == "tiktoken" else HeuristicCounter()


def age_days(now: datetime, then: datetime) -> float:
    """Days from ``then`` to ``now`` (never negative)."""
    return max(0.0, (now - then).total_seconds() / DAY_S)


def tree_bytes(root: Path, *, skip: tuple[Path, ...] = ()) -> tuple[int, int]:
    """``(bytes, files)`` of the regular files under ``root``, minus the ``skip`` trees."""
    total = files = 0
    if not root.exists():
        return 0, 0
    skips = {str(s) for s in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skips]
        for f in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return total, files


@dataclass
class LiveSession:
    """A session folder in the live store.

    Attributes:
        session_id: its id (folder name with ``__`` read as ``/``).
        dir: its folder.
        bytes: bytes of its files (lock file excluded).
        last_active: newest of its files' modification times and ``last_compaction_at``.
        first_seen: oldest modification time of its archive files.
        marked: an ``IMPORTANT`` file is in its folder.
        empty: it holds no archive line and no state (only lock/empty files).
    """

    session_id: str
    dir: Path
    bytes: int
    last_active: datetime
    first_seen: datetime
    marked: bool
    empty: bool

    def read(self) -> tuple[bytes, Any]:
        """``(payload, state)``: every complete archive line in segment order (a torn last
        line of a segment, never acknowledged, is left out) and the parsed state.json."""
        d = self.dir
        out = bytearray()
        for f in sorted(d.glob("archive-*.jsonl.gz")) + [d / "archive.jsonl"]:
            try:
                raw = f.read_bytes()
            except FileNotFoundError:
                continue
            data = gzip.decompress(raw) if f.suffix == ".gz" else raw
            out += data[: data.rfind(b"\n") + 1]
        try:
            state = json.loads((d / "state.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = None
        return bytes(out), state


def live_sessions(store: Path) -> list[LiveSession]:
    """Every session folder under ``<store>/sessions``, sorted by id."""
    base = store / "sessions"
    if not base.is_dir():
        return []
    return [s for d in sorted(base.iterdir()) if (s := live_session(d)) is not None]


def live_session(d: Path) -> LiveSession | None:
    """The session in folder ``d`` (``None`` when it is not a folder any more)."""
    try:
        names = [e for e in os.scandir(d) if e.is_file() and not e.name.startswith(".")]
        stats = {e.name: e.stat() for e in names}
        dir_mtime = d.stat().st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return None
    mtime = {n: datetime.fromtimestamp(st.st_mtime, timezone.utc) for n, st in stats.items()}
    arch = [n for n in stats if n.startswith("archive")]
    last = max(mtime.values(), default=datetime.fromtimestamp(dir_mtime, timezone.utc))
    if "state.json" in stats:
        try:
            lc = json.loads((d / "state.json").read_text(encoding="utf-8")).get(
                "last_compaction_at")
            if lc:
                last = max(last, parse_iso(lc))
        except (ValueError, OSError):
            pass
    return LiveSession(
        session_id=d.name.replace("__", "/"), dir=d,
        bytes=sum(st.st_size for st in stats.values()), last_active=last,
        first_seen=min((mtime[n] for n in arch), default=last),
        marked=MARK_FILE in stats,
        empty=not any(st.st_size > 0 for n, st in stats.items() if n != MARK_FILE))


@dataclass
class Loaded:
    """A live session's content, parsed once per run."""

    payload: bytes
    sha: str
    state: Any
    messages: list[dict[str, Any]]
    profile: Profile


@dataclass
class SessionView:
    """One session as maintenance sees it.

    Attributes:
        session_id: the id.
        live: its live store folder, if any.
        entry: its archive entry, if any.
        age_days: days since its last activity.
        importance: its score (live: from its messages; archived: from the entry, with
            today's ``marked`` patterns and threshold applied).
        tier: where it is now (``FULL`` in the live store only, else the entry's tier).
        due: the tier its age and importance call for.
    """

    session_id: str
    live: LiveSession | None
    entry: Entry | None
    age_days: float
    importance: Importance
    tier: Tier
    due: Tier
    loaded: Loaded | None = field(default=None, repr=False)


def load_live(s: LiveSession, counter: TokenCounter) -> Loaded:
    """Read and profile a live session."""
    payload, state = s.read()
    msgs = messages_from_payload(payload)
    return Loaded(payload, sha256(payload), state, msgs, profile(msgs, counter))


def entry_importance(e: Entry, cfg: MaintenanceConfig) -> Importance:
    """An archived session's importance under today's config."""
    imp = e.data["importance"]
    marked = bool(imp.get("marked"))
    marked = marked or any(fnmatch.fnmatchcase(e.session_id, p) for p in cfg.importance.marked)
    score = 1.0 if marked else float(imp.get("score", 0.0))
    return Importance(score, marked or score >= cfg.importance.threshold, marked,
                      dict(imp.get("signals", {})))


def views(cfg: MaintenanceConfig, now: datetime, counter: TokenCounter) -> list[SessionView]:
    """Every session in the live store or the archive, sorted by id."""
    arch = entries(cfg.archive_root)
    out: dict[str, SessionView] = {}
    for s in live_sessions(cfg.store):
        if s.empty:
            continue
        loaded = load_live(s, counter)
        imp = importance(loaded.profile, cfg.importance, marked=s.marked,
                         session_id=s.session_id)
        age = age_days(now, s.last_active)
        out[s.session_id] = SessionView(s.session_id, s, arch.get(s.session_id), age, imp,
                                        Tier.FULL, due_tier(age, imp.important, cfg.tiers,
                                                            cfg.importance), loaded)
    for sid, e in arch.items():
        if sid in out:
            continue
        imp = entry_importance(e, cfg)
        age = age_days(now, e.last_active)
        out[sid] = SessionView(sid, None, e, age, imp, Tier(e.tier),
                               due_tier(age, imp.important, cfg.tiers, cfg.importance))
    return [out[k] for k in sorted(out)]


def retention_reason(v: SessionView, tier: Tier, cfg: MaintenanceConfig) -> str | None:
    """Why a retention rule deletes this session (in ``tier``), or ``None`` to keep it.
    Only sessions no longer in the live store are candidates."""
    r = cfg.retention
    if v.importance.important and r.keep_important:
        return None
    if r.keep_days is not None and v.age_days > r.keep_days:
        return f"older than keep_days ({r.keep_days:g})"
    if (r.delete_metadata_only_after_days is not None and tier is Tier.METADATA
            and v.age_days > r.delete_metadata_only_after_days):
        return (f"metadata only and older than delete_metadata_only_after_days "
                f"({r.delete_metadata_only_after_days:g})")
    return None


def sizes(cfg: MaintenanceConfig) -> dict[str, int]:
    """Bytes and counts on disk now: ``ledger_bytes`` (every segment), ``store_bytes``
    (session folders), ``archive_bytes`` (entries and payloads), ``sessions_bytes``
    (store + archive), ``ledger_segments``, ``archive_entries``, ``live_sessions``."""
    from compactor.ledger._segments import list_segments

    ledger = Path(os.path.abspath(cfg.ledger))
    listing = list_segments(ledger)
    seg_files = [p for s in listing.segments for p in (s.plain, s.gz) if p is not None]
    ledger_bytes = sum(p.stat().st_size for p in seg_files if p.exists())
    if ledger.exists():
        ledger_bytes += ledger.stat().st_size
    store_b, _ = tree_bytes(cfg.store / "sessions")
    arch_b, _ = tree_bytes(cfg.archive_root, skip=(cfg.archive_root / ".trash",))
    n_entries = sum(1 for _ in cfg.archive_root.glob("[0-9]*/[0-9]*/*.json")) \
        if cfg.archive_root.is_dir() else 0
    base = cfg.store / "sessions"
    return {"ledger_bytes": ledger_bytes, "store_bytes": store_b, "archive_bytes": arch_b,
            "sessions_bytes": store_b + arch_b,
            "ledger_segments": len(listing.segments) + (1 if ledger.exists() else 0),
            "archive_entries": n_entries,
            "live_sessions": sum(1 for p in base.iterdir() if p.is_dir()) if base.is_dir() else 0}
