"""What the maintenance-on-PostgreSQL tests share: sessions written through the real
``MessageCompactor``, aged by the test itself (PostgreSQL: the row's times; a folder: the
files' times; both: the state's ``last_compaction_at``), the tier rule of our spec, the
CLI in-process and as real subprocesses, and where each session ended up."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from builders import a_calls, a_text, a_user, anthropic_session
from compactor import HeuristicCounter, MessageCompactor
from compactor._store import FileSessionStore, canonical_json
from compactor.cli import main
from compactor.ledger import Ledger
from compactor.maintenance import entries

REPO = Path(__file__).resolve().parents[2]
#: The crash tests' runner (a progress hook installed in the child process only).
FAULT_CLI = REPO / "tests" / "maintenance" / "fault_cli.py"
NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)
NOW_ISO = "2025-06-01T00:00:00Z"

#: Our spec's tier boundaries (days) and the age factor of important sessions.
FULL, KEY, BRIEF, FACTOR = 7, 30, 90, 3


def expected_tier(age_days: float, important: bool) -> str:
    """The tier a session of this age is due for (docs/maintenance.md, written out here)."""
    a = age_days / (FACTOR if important else 1)
    return ("full" if a < FULL else "key_points" if a < KEY
            else "brief_summary" if a < BRIEF else "metadata_only")


def plan(ids: Sequence[str], steps: int = 5) -> dict[str, tuple[list, list[list]]]:
    """Per session: its first history and the messages each later call adds (a text
    answer, a question and a tool loop), different for every session."""
    out = {}
    for i, sid in enumerate(ids):
        first = anthropic_session(2 + i % 3)
        more = []
        for t in range(steps):
            call, res = a_calls("grep", "read_file")
            more.append([a_text(f"{sid}: answer {t} " * 15), a_user(f"{sid}: question {t}"),
                         call, res])
        out[sid] = (first, more)
    return out


async def _drive(store: Any, p: dict[str, tuple[list, list[list]]]) -> dict[str, list]:
    comp = MessageCompactor(counter=HeuristicCounter(), window=1500, store=store)
    sent_all = {}
    for sid, (first, more) in p.items():
        history, sent = list(first), list(first)
        for step in more:
            await comp.compact_if_needed(json.loads(json.dumps(history)), session_id=sid)
            history += step
            sent += step
        await comp.compact_if_needed(json.loads(json.dumps(history)), session_id=sid)
        sent_all[sid] = sent
    return sent_all


def write_sessions(store: Any, p: dict[str, tuple[list, list[list]]]) -> dict[str, list]:
    """Drive a ``MessageCompactor`` on ``store`` through each session's calls (every
    history JSON round-tripped). Returns what was sent per session."""
    return asyncio.run(_drive(store, p))


def _aged_state(state: dict[str, Any], when: datetime) -> dict[str, Any]:
    if "last_compaction_at" in state:
        state["last_compaction_at"] = when.isoformat(timespec="milliseconds")
    return state


def age_pg(url: str, ages: dict[str, float]) -> None:
    """Make each session's last activity ``ages[id]`` days before :data:`NOW`, in the
    database itself (the row's ``active_at``/``created_at`` and the state's
    ``last_compaction_at``; its version untouched)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for sid, days in ages.items():
            when = NOW - timedelta(days=days)
            row = conn.execute("SELECT state FROM compactor_sessions WHERE session_id = %s",
                               (sid,)).fetchone()
            assert row is not None, sid
            state = None if row[0] is None else json.dumps(
                _aged_state(json.loads(row[0]), when), ensure_ascii=False, sort_keys=True)
            conn.execute("UPDATE compactor_sessions SET active_at = %s, created_at = %s, "
                         "state = %s WHERE session_id = %s", (when, when, state, sid))


def age_files(store: FileSessionStore, ages: dict[str, float]) -> None:
    """The same in a folder store: the state file's ``last_compaction_at`` rewritten in
    place (its version untouched), then every file's times set."""
    for sid, days in ages.items():
        when = NOW - timedelta(days=days)
        folder = store.session_dir(sid)
        f = folder / "state.json"
        if f.exists():
            state = _aged_state(json.loads(f.read_text(encoding="utf-8")), when)
            f.write_text(json.dumps(state, ensure_ascii=False, indent=1, sort_keys=True),
                         encoding="utf-8")
        t = when.timestamp()
        for p in folder.iterdir():
            os.utime(p, (t, t))
        os.utime(folder, (t, t))


def start_ledger(path: Path) -> None:
    """A ledger with one compaction record (health reads a ledger)."""
    with Ledger(path, clock=lambda: NOW - timedelta(hours=1), fsync="never") as led:
        led.emit("compaction", {"session_id": "seed", "agent_id": "t", "tokens_before": 1000,
                                "tokens_after": 400, "ratio": 0.6, "summarizer": "extractive"})


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``compactor ARGV`` in this process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def child_env() -> dict[str, str]:
    """This environment without ``COMPACTOR_*`` variables, importing this tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPACTOR_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def child_argv(argv: list[str], fault: str | None = None,
               trace: Path | None = None) -> list[str]:
    """``compactor ARGV`` as a child process; through fault_cli.py with ``fault``/``trace``."""
    if fault is None and trace is None:
        return [sys.executable, "-m", "compactor.cli", *argv]
    head = [fault or ""] + (["--trace", str(trace)] if trace is not None else [])
    return [sys.executable, str(FAULT_CLI), *head, "--", *argv]


def run_child(argv: list[str], fault: str | None = None,
              trace: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(child_argv(argv, fault, trace), capture_output=True, text=True,
                          env=child_env(), timeout=110)


def outcome(live: Any, archives: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Where every session is: ``{"live": restored canonical messages or None,
    "archived": [(archive index, tier, important, hash-checked canonical messages)]}``."""
    out: dict[str, dict[str, Any]] = {}
    for sid in live.sessions():
        out.setdefault(sid, {"live": None, "archived": []})["live"] = [
            canonical_json(m) for m in live.restore(sid)]
    for k, root in enumerate(archives):
        for sid, e in entries(root).items():
            out.setdefault(sid, {"live": None, "archived": []})["archived"].append(
                (k, e.tier, e.important, [canonical_json(m) for m in e.messages()]))
    return out


def canon_all(sent: dict[str, list]) -> dict[str, list[str]]:
    return {sid: [canonical_json(m) for m in msgs] for sid, msgs in sent.items()}
