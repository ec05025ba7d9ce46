"""A generated fleet for the maintenance tests: real transcripts (tau-bench airline runs
and LoCoMo conversations from ../shared/data) stored as sessions whose last activity is
spread over 400 days before ``NOW``, a few marked important, plus a ledger of
compaction records. Ages are injected through file timestamps, never by sleeping."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from compactor._replay import load_conversations
from compactor import content_hash
from compactor._store import SessionStore, canonical_json
from compactor.ledger import Ledger

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)
NOW_ISO = "2025-06-01T00:00:00Z"
SPAN_DAYS = 400
MARK_EVERY = 9          # every 9th session is marked important (store.mark)


def load_content(shared: Path, n_tau: int,
                 n_locomo: int = 5) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(session_id, messages)``: the first ``n_tau`` tau-bench runs and ``n_locomo``
    LoCoMo conversations, interleaved so long sessions land at several ages."""
    tau = load_conversations(shared / "tau_bench_gpt4o_airline.anthropic.jsonl", "anthropic")
    loc = load_conversations(shared / "locomo_dev.jsonl")[:n_locomo]
    out = [(c.id, c.messages) for c in tau[:n_tau]]
    step = max(1, len(out) // len(loc))
    for i, c in enumerate(loc):
        out.insert(min(len(out), i * step + 2), (c.id, c.messages))
    return out


def set_age(folder: Path, when: datetime) -> None:
    t = when.timestamp()
    for f in folder.iterdir():
        os.utime(f, (t, t))
    os.utime(folder, (t, t))


def small_store(root: Path, ages: dict[str, float]) -> dict[str, list]:
    """A store under ``root/store`` with one two-message session per id, each aged
    ``ages[id]`` days before :data:`NOW`. Returns the messages per session id."""
    st = SessionStore(root / "store")
    out = {}
    for sid, age in ages.items():
        msgs = [{"role": "user", "content": f"Rebook {sid} to Oslo, please."},
                {"role": "assistant", "content": f"Done: {sid} is rebooked."}]
        st.append(sid, [(i, content_hash(m), m) for i, m in enumerate(msgs)])
        set_age(st.session_dir(sid), NOW - timedelta(days=age))
        out[sid] = msgs
    return out


def build_fleet(root: Path, shared: Path, n_tau: int = 200, n_locomo: int = 5) -> dict[str, Any]:
    """Create ``root/store`` and ``root/ledger/ledger.jsonl``. Returns the manifest:
    ``{"sessions": {id: {"age_days", "marked", "messages"}}}``."""
    store = SessionStore(root / "store")
    content = load_content(shared, n_tau, n_locomo)
    manifest: dict[str, Any] = {}
    for i, (sid, msgs) in enumerate(content):
        age = 0.5 + i * (SPAN_DAYS - 1) / len(content)
        half = len(msgs) // 2
        store.append(sid, [(o, content_hash(m), m) for o, m in enumerate(msgs[:half])])
        if i % 4 == 1:                       # some sessions have a closed gzip segment
            store.close_archive(sid)
        store.append(sid, [(o, content_hash(m), m) for o, m in enumerate(msgs) if o >= half])
        when = NOW - timedelta(days=age)
        if i % 3 == 0:                       # and some a state.json from a compaction
            store.save_state(sid, {"summary": "earlier turns summarized",
                                   "compaction_count": 1 + i % 5,
                                   "last_compaction_at": when.isoformat(timespec="milliseconds"),
                                   "next_ordinal": len(msgs), "archived_ranges": [[0, half]]})
        marked = i % MARK_EVERY == 4
        if marked:
            store.mark(sid)
        set_age(store.session_dir(sid), when)
        manifest[sid] = {"age_days": age, "marked": marked,
                         "messages": [canonical_json(m) for m in msgs]}
    write_ledger(root / "ledger" / "ledger.jsonl", last=NOW - timedelta(hours=3))
    return {"sessions": manifest}


def write_ledger(path: Path, *, last: datetime, days: int = 3, per_day: int = 8,
                 ratio: float = 0.6) -> None:
    """Compaction records over ``days`` days ending at ``last`` (one segment a day)."""
    clock = [last - timedelta(days=days - 1)]
    with Ledger(path, clock=lambda: clock[0], fsync="never") as led:
        for d in range(days):
            for k in range(per_day):
                clock[0] = last - timedelta(days=days - 1 - d, hours=per_day - 1 - k)
                before = 10_000 + 100 * k
                led.emit("compaction", {"session_id": f"s-{d}-{k}", "agent_id": "fleet",
                                        "tokens_before": before,
                                        "tokens_after": int(before * (1 - ratio)),
                                        "ratio": ratio, "summarizer": "extractive"})


def tree_digest(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path -> sha256 of its bytes (and its
    mode), so any created, deleted or changed byte shows."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            out[str(p.relative_to(root)) + "/"] = oct(p.stat().st_mode)
        for f in filenames:
            p = Path(dirpath, f)
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest()
                                             + oct(p.stat().st_mode))
    return out
