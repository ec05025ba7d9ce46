"""Assertions shared by the maintenance tests, written independently of the code under
test: the tier rule of our spec and a restore of every session from wherever it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compactor._store import SessionStore, canonical_json
from compactor.maintenance import ArchiveError, entries

#: Our spec's tier boundaries (days) and the default age factor for important sessions.
FULL, KEY, BRIEF = 7, 30, 90
IMPORTANT_FACTOR = 3


def expected_tier(age_days: float, important: bool) -> str:
    a = age_days / (IMPORTANT_FACTOR if important else 1)
    if a < FULL:
        return "full"
    if a < KEY:
        return "key_points"
    if a < BRIEF:
        return "brief_summary"
    return "metadata_only"


def locate(store: Path) -> dict[str, str]:
    """Session id -> "live", "archive" or "both"."""
    out: dict[str, str] = {}
    for sid in SessionStore(store).sessions():
        out[sid] = "live"
    for sid in entries(store / "archive"):
        out[sid] = "both" if sid in out else "archive"
    return out


def assert_all_restorable(store: Path, manifest: dict[str, Any]) -> None:
    """Every session of the manifest restores byte-identical (canonical JSON), from the
    archive (hash-checked) and, where it is still there, from the live store."""
    where = locate(store)
    missing = sorted(set(manifest) - set(where))
    assert not missing, f"sessions lost: {missing[:5]}"
    arch = entries(store / "archive")
    live = SessionStore(store)
    for sid, info in manifest.items():
        if where[sid] in ("archive", "both"):
            try:
                got = [canonical_json(m) for m in arch[sid].messages()]
            except ArchiveError as e:  # pragma: no cover - reported below
                raise AssertionError(f"{sid}: {e}") from e
            assert got == info["messages"], sid
        if where[sid] in ("live", "both"):
            got = [canonical_json(m) for m in live.restore(sid)]
            assert got == info["messages"], sid


def leftovers(store: Path) -> list[Path]:
    """Temp files, trash, backups and journals a finished run must not leave."""
    found = [p for p in store.rglob("*") if p.name.endswith(".tmp") and p.is_file()]
    found += [p for p in (store / ".maintenance" / "trash", store / "archive" / ".trash")
              if p.exists() and any(q.is_file() for q in p.rglob("*"))]
    found += [p for p in [store / ".maintenance" / "journal.jsonl"] if p.exists()]
    return found
