"""Read-only views of the store, the archive and the ledger: what exists, how old it is,
how big, and which tier each session is due for. Nothing here writes a byte, so
``maintain --assess``, ``maintain --dry-run`` and ``health`` are built on it alone.

Live sessions are seen only through the store protocol
(:class:`compactor._store.SessionStoreProtocol`: ``sessions``, ``stat``, ``export`` --
read under the session's store lock, ``lock_within`` -- and ``usage``), so a folder store
and a ``postgresql://`` store are handled alike; nothing here knows where or how the
store keeps them.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from compactor._store import (
    FileSessionStore,
    SessionStat,
    SessionStoreProtocol,
    export_digest,
)
from compactor._tokens import HeuristicCounter, TiktokenCounter, TokenCounter
from compactor.maintenance._archive import (
    Entry,
    entries,
    messages_from_payload,
    sha256,
)
from compactor.maintenance._config import STATE_DIR, MaintenanceConfig
from compactor.maintenance._profile import Importance, Profile, Tier, due_tier, importance, profile

DAY_S = 86_400.0

#: A live session as the store describes it (size, activity, mark, emptiness).
LiveSession = SessionStat


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


def open_store(cfg: MaintenanceConfig, *, create: bool = False) -> SessionStoreProtocol | None:
    """The live session store of the config: a ``PostgresStore`` for a ``postgresql://``
    URL (its schema migrated when ``create``, else only checked), else the folder's
    ``FileSessionStore`` (None when there is none and ``create`` is false: read-only
    views create nothing). Close a ``PostgresStore`` with :func:`close_store`.

    Raises:
        ConfigError: the server cannot be reached, or its schema is behind (read-only)
            or newer than this compactor.
        MissingExtraError: a URL without the ``postgres`` extra installed.
    """
    if cfg.store_url is not None:
        from compactor._stores import open_store as open_url

        return open_url(cfg.store_url, migrate=create)
    assert isinstance(cfg.store, Path)
    return FileSessionStore(cfg.store) if create else FileSessionStore.open_existing(cfg.store)


def close_store(store: SessionStoreProtocol | None) -> None:
    """Release what a store holds open (a ``PostgresStore``'s connections)."""
    close = getattr(store, "close", None)
    if callable(close):
        close()


def live_sessions(store: SessionStoreProtocol | None) -> list[LiveSession]:
    """Every session of the live store, sorted by id ([] without a store)."""
    if store is None:
        return []
    return [s for sid in store.sessions() if (s := store.stat(sid)) is not None]


@dataclass
class Loaded:
    """A live session's content, parsed once per run."""

    payload: bytes
    sha: str
    state: Any
    digest: str
    messages: list[dict[str, Any]]
    profile: Profile


@dataclass
class SessionView:
    """One session as maintenance sees it.

    Attributes:
        session_id: the id.
        live: its live store facts, if it is in the live store.
        entry: its archive entry, if any.
        age_days: days since its last activity.
        importance: its score (live: from its messages; archived: from the entry, with
            today's ``marked`` patterns and threshold applied).
        tier: where it is now (``FULL`` in the live store only, else the entry's tier).
        due: the tier its age and importance call for (``FULL`` for a busy session).
        loaded: the live session's content (None: archived only, or busy).
        busy: a live session whose store lock a writer held longer than the views
            waited: not read, left for a later run.
    """

    session_id: str
    live: LiveSession | None
    entry: Entry | None
    age_days: float
    importance: Importance
    tier: Tier
    due: Tier
    loaded: Loaded | None = field(default=None, repr=False)
    busy: bool = False


def load_live(store: SessionStoreProtocol, session_id: str, counter: TokenCounter) -> Loaded:
    """Read (call under the session's store lock) and profile a live session.

    Raises:
        ValueError, KeyError, OSError, EOFError: its archive cannot be read as a history.
    """
    payload, state = store.export(session_id)
    msgs = messages_from_payload(payload)
    return Loaded(payload, sha256(payload), state, export_digest(payload, state), msgs,
                  profile(msgs, counter))


def entry_importance(e: Entry, cfg: MaintenanceConfig) -> Importance:
    """An archived session's importance under today's config."""
    imp = e.data["importance"]
    marked = bool(imp.get("marked"))
    marked = marked or any(fnmatch.fnmatchcase(e.session_id, p) for p in cfg.importance.marked)
    score = 1.0 if marked else float(imp.get("score", 0.0))
    return Importance(score, marked or score >= cfg.importance.threshold, marked,
                      dict(imp.get("signals", {})))


def views(cfg: MaintenanceConfig, now: datetime, counter: TokenCounter,
          store: SessionStoreProtocol | None = None, *,
          lock_timeout_s: float = 5.0) -> list[SessionView]:
    """Every session in the live store or the archive, sorted by id. Each live session is
    read under its store lock (``store``: the store to use, default :func:`open_store`);
    one a writer holds longer than ``lock_timeout_s`` seconds is ``busy``."""
    arch = entries(cfg.archive_root)
    out: dict[str, SessionView] = {}
    if store is None and cfg.store_url is None:
        store = open_store(cfg)
    for s in live_sessions(store):
        if s.empty:
            continue
        assert store is not None
        age = age_days(now, s.last_active)
        try:
            with store.lock_within(s.session_id, lock_timeout_s):
                loaded = load_live(store, s.session_id, counter)
        except TimeoutError:
            out[s.session_id] = SessionView(
                s.session_id, s, arch.get(s.session_id), age,
                Importance(1.0 if s.marked else 0.0, s.marked, s.marked, {}), Tier.FULL,
                Tier.FULL, None, busy=True)
            continue
        imp = importance(loaded.profile, cfg.importance, marked=s.marked,
                         session_id=s.session_id)
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


def sizes(cfg: MaintenanceConfig, store: SessionStoreProtocol | None = None) -> dict[str, int]:
    """Bytes and counts now: ``ledger_bytes`` (every segment), ``store_bytes`` (the
    store's :meth:`usage`: session folders, or the tables in the database),
    ``archive_bytes`` (entries and payloads), ``sessions_bytes`` (store + archive),
    ``ledger_segments``, ``archive_entries``, ``live_sessions``. ``store``: the store to
    measure (default: the folder store of ``cfg``, if any; a URL store must be given)."""
    from compactor.ledger._segments import list_segments

    ledger = Path(os.path.abspath(cfg.ledger))
    listing = list_segments(ledger)
    seg_files = [p for s in listing.segments for p in (s.plain, s.gz) if p is not None]
    ledger_bytes = sum(p.stat().st_size for p in seg_files if p.exists())
    if ledger.exists():
        ledger_bytes += ledger.stat().st_size
    if store is None and cfg.store_url is None:
        store = open_store(cfg)
    store_b, n_live = store.usage() if store is not None else (0, 0)
    arch_b, _ = tree_bytes(cfg.archive_root, skip=(cfg.archive_root / ".trash",
                                                    cfg.archive_root / STATE_DIR))
    n_entries = sum(1 for _ in cfg.archive_root.glob("[0-9]*/[0-9]*/*.json")) \
        if cfg.archive_root.is_dir() else 0
    return {"ledger_bytes": ledger_bytes, "store_bytes": store_b, "archive_bytes": arch_b,
            "sessions_bytes": store_b + arch_b,
            "ledger_segments": len(listing.segments) + (1 if ledger.exists() else 0),
            "archive_entries": n_entries, "live_sessions": n_live}
