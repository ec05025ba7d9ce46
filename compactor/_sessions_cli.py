"""``compactor sessions list|show|restore``: the session archive from the command line."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ._errors import ConfigError
from ._stores import is_store_url
from ._stores import open_store as _open_any

#: Default store root: ``$COMPACTOR_HOME`` or ``./compactor-data``.
DEFAULT_STORE_ENV = "COMPACTOR_HOME"


def default_store() -> str:
    """The store used when ``--store`` is not given: ``[store] url`` or ``[store] root`` of
    ``compactor.toml`` (``$COMPACTOR_HOME`` included), else ``./compactor-data``."""
    from ._config import resolve_store_root

    return str(resolve_store_root())


def add_sessions_commands(sub: Any) -> None:
    """Register ``sessions list|show|restore`` on an argparse sub-parsers object."""
    p = sub.add_parser("sessions", help="list, show and restore archived sessions")
    p.add_argument("--store", default=None, help="store folder or postgresql:// URL (default: "
                   f"[store] url or root of compactor.toml, ${DEFAULT_STORE_ENV}, else "
                   "./compactor-data)")
    ss = p.add_subparsers(dest="sessions_command", required=True)
    ls = ss.add_parser("list", help="one line per session: compactions, archived messages, bytes")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_closing(_list))
    sh = ss.add_parser("show", help="a session's state, archive and current summary")
    sh.add_argument("session_id")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_closing(_show))
    rs = ss.add_parser("restore", help="print the full original history as JSON")
    rs.add_argument("session_id")
    rs.add_argument("--out", help="write to this file instead of stdout")
    rs.set_defaults(func=_closing(_restore))
    for child in (ls, sh, rs):   # --store is accepted after the sub-command too
        child.add_argument("--store", default=argparse.SUPPRESS, help="store root")


def store_root(args: argparse.Namespace) -> str:
    """``--store``, else :func:`default_store`: a folder or a ``postgresql://`` URL."""
    return str(getattr(args, "store", None) or default_store())


def store_label(spec: str) -> str:
    """How a store is named in messages: its folder, or its URL without the password."""
    if is_store_url(spec):
        from ._pgstore import display_url   # psycopg is there: the store was opened

        return display_url(spec)
    return spec


def open_store(spec: str | os.PathLike[str]) -> Any:
    """The existing store ``spec`` names (a folder, or a ``postgresql://`` URL through
    :func:`compactor._stores.open_store`), or a one-line :class:`ConfigError` naming it
    and the fix: a read command never creates a store folder where none was.

    Raises:
        ConfigError: the folder does not exist, is a file, or cannot be opened; the
            database cannot be reached (``MissingExtraError`` without the postgres extra).
    """
    if is_store_url(spec):
        return _open_any(str(spec))
    root = Path(spec)
    if not root.exists():
        raise ConfigError(f"no session store at {root} (no such folder); fix: pass --store DIR "
                          f"(the folder given to `compactor replay --store`) or set "
                          f"${DEFAULT_STORE_ENV}", field="store", source=str(root))
    if not root.is_dir():
        raise ConfigError(f"session store {root} is a file, not a folder; fix: pass the store "
                          "folder with --store DIR", field="store", source=str(root))
    try:
        return _open_any(root)
    except OSError as e:
        raise ConfigError(f"session store {root}: cannot be opened ({e.strerror or e}"
                          f"{f': {e.filename}' if e.filename else ''}); fix: run as a user who "
                          "may read and write it, or pass another --store", field="store",
                          source=str(root)) from None


def _store(args: argparse.Namespace) -> tuple[Any, str]:
    """The store of ``args`` and its name for messages."""
    spec = store_root(args)
    return open_store(spec), store_label(spec)


def _closing(func: Any) -> Any:
    """Run a command, then close its store when the store has ``close`` (PostgreSQL's
    connection pool)."""
    def run(args: argparse.Namespace) -> int:
        st, label = _store(args)
        try:
            return int(func(args, st, label))
        finally:
            close = getattr(st, "close", None)
            if close is not None:
                close()
    run.__doc__ = func.__doc__
    return run


def _list(args: argparse.Namespace, st: Any, label: str) -> int:
    infos = [st.info(sid) for sid in st.sessions()]
    if args.json:
        print(json.dumps([{k: v for k, v in i.items() if k != "summary"} for i in infos]))
        return 0
    t = Table(title=f"sessions in {label}")
    for col in ("session", "compactions", "last compaction", "archived messages", "bytes"):
        t.add_column(col)
    for i in infos:
        t.add_row(i["session_id"], str(i["compaction_count"]), str(i["last_compaction_at"] or "-"),
                  str(i["messages_archived"]), f"{i['archive_bytes']:,}")
    Console().print(t)
    return 0


def _show(args: argparse.Namespace, st: Any, label: str) -> int:
    if args.session_id not in st.sessions():
        hint = ("check the id with `compactor sessions list`")
        if _archived(store_root(args), args.session_id) is not None:
            hint = (f"maintenance moved it to the archive: `compactor archive show "
                    f"{args.session_id}`")
        raise ConfigError(f"no live session {args.session_id!r} in {label}; fix: {hint}",
                          field="session_id")
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
    to the file ``out`` and print ``N messages written to OUT`` followed by ``note``.

    The file is created with mode 0600 (a regular file that exists is set to 0600 before it
    is written): a full history can hold secrets.

    Raises:
        ConfigError: ``out`` cannot be written (the message names it and the fix).
    """
    body = json.dumps(msgs, ensure_ascii=False)
    if not out:
        print(body)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as fh:
                fh.write(body + "\n")
        finally:
            os.close(fd)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot be written ({e.strerror or e}); fix: pass a "
                          "file in a folder you may write to", field="out") from None
    print(f"{len(msgs)} messages written to {out}{note}")


def _archived(spec: str, session_id: str) -> Any:
    """The maintenance archive's entry of ``session_id`` in the store ``spec`` (a folder or
    a ``postgresql://`` URL), or None when it has none. The archive root is the maintenance
    config's (``[maintenance] archive``), default ``<store>/archive`` for a folder; a URL
    store with no archive folder configured has no archive to look in (None).

    Raises:
        ConfigError: the config file is invalid.
        ArchiveError: the entry exists but cannot be read.
    """
    from .maintenance._archive import ArchiveError, find
    from .maintenance._config import load_config

    cfg = load_config(None).with_paths(store=str(spec))
    try:
        archive_root = cfg.archive_root
    except ConfigError:      # a URL store and no [maintenance] archive
        return None
    try:
        return find(archive_root, session_id)
    except ArchiveError as e:
        if e.path is None:   # no entry for that id
            return None
        raise


def _restore(args: argparse.Namespace, st: Any, label: str) -> int:
    """The live store's history of the session; when maintenance archived it, the
    archive's (hash-verified), as ``compactor archive restore`` gives it."""
    note = ""
    if args.session_id in st.sessions():
        msgs = st.restore(args.session_id)
    else:
        entry = _archived(store_root(args), args.session_id)
        if entry is None:
            raise ConfigError(f"no session {args.session_id!r} in {label}, live or archived; "
                              "fix: check the id with `compactor sessions list` and `compactor "
                              "archive list`", field="session_id")
        msgs = entry.messages()
        note = f" (from the archive {entry.path}, hash verified)"
    write_messages(msgs, args.out, note)
    return 0
