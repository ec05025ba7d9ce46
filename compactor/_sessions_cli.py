"""``compactor sessions list|show|restore``: the session archive from the command line."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table

from ._store import SessionStore

#: Default store root: ``$COMPACTOR_HOME`` or ``./compactor-data``.
DEFAULT_STORE_ENV = "COMPACTOR_HOME"


def default_store() -> str:
    """The store root used when ``--store`` is not given."""
    return os.environ.get(DEFAULT_STORE_ENV, "compactor-data")


def add_sessions_commands(sub: Any) -> None:
    """Register ``sessions list|show|restore`` on an argparse sub-parsers object."""
    p = sub.add_parser("sessions", help="list, show and restore archived sessions")
    p.add_argument("--store", default=None, help=f"store root (default ${DEFAULT_STORE_ENV} or "
                   "./compactor-data)")
    ss = p.add_subparsers(dest="sessions_command", required=True)
    ls = ss.add_parser("list", help="one line per session: compactions, archived messages, bytes")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    sh = ss.add_parser("show", help="a session's state, archive and current summary")
    sh.add_argument("session_id")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_show)
    rs = ss.add_parser("restore", help="print the full original history as JSON")
    rs.add_argument("session_id")
    rs.add_argument("--out", help="write to this file instead of stdout")
    rs.set_defaults(func=_restore)
    for child in (ls, sh, rs):   # --store is accepted after the sub-command too
        child.add_argument("--store", default=argparse.SUPPRESS, help="store root")


def _store(args: argparse.Namespace) -> SessionStore:
    return SessionStore(args.store or default_store())


def _list(args: argparse.Namespace) -> int:
    st = _store(args)
    infos = [st.info(sid) for sid in st.sessions()]
    if args.json:
        print(json.dumps([{k: v for k, v in i.items() if k != "summary"} for i in infos]))
        return 0
    t = Table(title=f"sessions in {st.root}")
    for col in ("session", "compactions", "last compaction", "archived messages", "bytes"):
        t.add_column(col)
    for i in infos:
        t.add_row(i["session_id"], str(i["compaction_count"]), str(i["last_compaction_at"] or "-"),
                  str(i["messages_archived"]), f"{i['archive_bytes']:,}")
    Console().print(t)
    return 0


def _show(args: argparse.Namespace) -> int:
    st = _store(args)
    if not st.session_dir(args.session_id).exists():
        print(f"compactor: no session {args.session_id!r} in {st.root}")
        return 2
    info = st.info(args.session_id)
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    c = Console()
    for k in ("session_id", "compaction_count", "last_compaction_at", "messages_archived",
              "archived_ranges", "archive_bytes", "archive_segments"):
        c.print(f"{k}: {info[k]}", markup=False, highlight=False)
    c.print("summary:", markup=False)
    c.print(info["summary"] or "(none)", markup=False, highlight=False)
    return 0


def write_messages(msgs: list[dict[str, Any]], out: str | None, note: str = "") -> None:
    """Print a restored history as one JSON list on stdout, or write it (plus a newline)
    to the file ``out`` and print ``N messages written to OUT`` followed by ``note``."""
    body = json.dumps(msgs, ensure_ascii=False)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
        print(f"{len(msgs)} messages written to {out}{note}")
    else:
        print(body)


def _restore(args: argparse.Namespace) -> int:
    write_messages(_store(args).restore(args.session_id), args.out)
    return 0
