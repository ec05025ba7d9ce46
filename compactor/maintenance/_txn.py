"""Crash-safe file changes: a write-ahead intent journal, backups, rollback and recovery.

Every change maintenance makes to the store or the archive happens inside a **step**
(one session archived, one entry re-tiered, one session deleted, ...). Before each
action the step appends an *intent* line to ``<state>/journal.jsonl`` and fsyncs it;
then it acts:

========== ===================================== =========================================
intent      action                                undo (idempotent)
========== ===================================== =========================================
create      write ``.name.tmp``, fsync, rename    unlink the temp file and the new file
replace     hard-link the old file to a backup,   rename the backup back over the file
            then write a temp file and rename
remove      rename the file or folder into trash  rename it back from trash
========== ===================================== =========================================

A session store may journal intents of its own (:meth:`Step.store_op`: a ``postgresql://``
store's ``pg_take_out`` moves a session's rows aside in one transaction); the store
undoes them (``undo_step_op``) and finishes them (``finish_step_op``), so the journal needs
the store to recover them. A folder store uses only the file intents above.

A step ends with a ``commit`` line; only then are its backups and trash deleted, and a
``done`` line written. So the journal always says what to do after a crash:

* a step with no ``commit``: **roll back** its intents in reverse (the state before it);
* a step with ``commit`` but no ``done``: **roll forward** (finish deleting its backups
  and trash).

The same undo runs in-process when a step raises (e.g. ``ENOSPC``). A SIGKILL at any
point therefore leaves every file either in its old or its new form, and the next run's
:func:`recover` puts things back in order before it starts. Backups (hard links) cost no
space and no copy; trash is a rename on the same file system.

Progress points: a run reports each point it passes to :data:`step_hook`: ``intent``
(after an intent line, before its action), ``action`` (after an action), ``write``
(halfway through writing a file), ``commit`` (after a commit line, before the cleanup),
``ledger`` (before each ledger task). The shipped hook does nothing, and nothing in the
environment or the configuration can change it: the crash tests replace it in their own
child process (``tests/maintenance/fault_cli.py``) to SIGKILL, pause or fail a run at a
chosen point.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


def _no_hook(point: str) -> None:
    """The shipped progress hook: does nothing."""


#: Called with the name of every progress point a run passes (see the module docstring).
#: A no-op in the package; only a test process replaces it (never from the environment).
step_hook: Callable[[str], None] = _no_hook


class Faults:
    """Where a run reports its progress points: each :meth:`hit` calls ``hook`` (default:
    the module's :data:`step_hook`, looked up at call time so a test can replace it)."""

    def __init__(self, hook: Callable[[str], None] | None = None) -> None:
        self._hook = hook

    def hit(self, point: str) -> None:
        """Report a pass through ``point`` to the hook (which may raise, e.g. ``OSError``)."""
        (self._hook or step_hook)(point)


def fsync_dir(path: Path) -> None:
    """fsync a directory so the renames and unlinks in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(d: Path) -> None:
    """Create ``d`` and its missing parents, each mode 0700 (whatever the umask)."""
    if d.is_dir():
        return
    make_dirs(d.parent)
    try:
        d.mkdir(mode=0o700)
    except FileExistsError:
        pass


def temp_for(path: Path) -> Path:
    """The temp name a new version of ``path`` is written under: ``.<name>.tmp``."""
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: Path, data: bytes, faults: Faults | None = None) -> None:
    """Write ``data`` to ``path`` by temp file + fsync + rename + directory fsync (mode
    0600; missing parent folders are created 0700). A failure removes the temp file.

    Raises:
        OSError: from the file system (``path`` is then unchanged).
    """
    make_dirs(path.parent)
    tmp = temp_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            half = len(data) // 2
            os.write(fd, data[:half])
            if faults is not None:
                faults.hit("write")
            view = memoryview(data)[half:]
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def _remove_tree(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


#: The intents this module undoes and finishes itself; any other op is a session store's
#: own (``Step.store_op``), undone and finished by that store.
FILE_OPS = ("create", "replace", "remove")


def _undo(intent: dict[str, Any], store: Any = None) -> str | None:
    """Undo one intent (idempotent). Returns a conflict message when it cannot."""
    op = intent["op"]
    if op not in FILE_OPS:
        if store is None:
            return f"store intent {op!r} of {intent.get('session_id')!r} needs its store"
        return store.undo_step_op(intent)
    path = Path(intent["path"])
    if op == "create":
        for p in (Path(intent["tmp"]), path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
    elif op == "replace":
        tmp, backup = Path(intent["tmp"]), Path(intent["backup"])
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if backup.exists():
            os.replace(backup, path)
    elif op == "remove":
        trash = Path(intent["trash"])
        if trash.exists() or trash.is_symlink():
            if path.exists():
                return f"{path} exists again; its old version stays at {trash}"
            make_dirs(path.parent)
            os.rename(trash, path)
    return None


def _finish(intent: dict[str, Any], store: Any = None) -> None:
    """Delete what a committed intent left behind (its backup or trash; a store intent:
    what its store kept aside)."""
    if intent["op"] not in FILE_OPS:
        if store is not None:
            store.finish_step_op(intent)
    elif intent["op"] == "replace":
        _remove_tree(Path(intent["backup"]))
    elif intent["op"] == "remove":
        _remove_tree(Path(intent["trash"]))


@dataclass
class RecoveryReport:
    """What :func:`recover` found in a journal left by an interrupted run.

    Attributes:
        run_id: the interrupted run (``None`` when no journal was found).
        rolled_back: steps undone (no commit line).
        rolled_forward: committed steps whose cleanup was finished.
        conflicts: undo actions that could not be applied (the data stays in trash).
    """

    run_id: str | None = None
    rolled_back: list[str] = field(default_factory=list)
    rolled_forward: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "rolled_back": self.rolled_back,
                "rolled_forward": self.rolled_forward, "conflicts": self.conflicts}


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a journal (a torn last line is an intent never acted on)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n")[:-1]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def recover(path: Path, store: Any = None) -> RecoveryReport:
    """Roll back the uncommitted steps and finish the committed ones of the journal at
    ``path``, then delete it. Call with the maintenance lock held. ``store``: the session
    store whose own intents (``Step.store_op``) the journal may hold; without it such an
    intent is reported as a conflict.

    Raises:
        OSError: from the file system (the journal is kept; the next run retries).
        Exception: from the store (the journal is kept; the next run retries).
    """
    lines = read_journal(path)
    report = RecoveryReport()
    steps: dict[str, dict[str, Any]] = {}
    for rec in lines:
        report.run_id = rec.get("run", report.run_id)
        sid = rec.get("step")
        if sid is None:
            continue
        st = steps.setdefault(sid, {"name": rec.get("name", sid), "intents": [],
                                    "commit": False, "done": False})
        kind = rec.get("kind")
        if kind == "begin":
            st["name"] = rec.get("name", sid)
        elif kind == "intent":
            st["intents"].append(rec)
        elif kind in ("commit", "done"):
            st[kind] = True
    for sid, st in steps.items():
        if st["done"]:
            continue
        if st["commit"]:
            for it in st["intents"]:
                _finish(it, store)
            report.rolled_forward.append(st["name"])
        else:
            for it in reversed(st["intents"]):
                msg = _undo(it, store)
                if msg:
                    report.conflicts.append(msg)
            report.rolled_back.append(st["name"])
    try:
        path.unlink()
        fsync_dir(path.parent)
    except FileNotFoundError:
        pass
    return report


class Journal:
    """The intent journal of one maintenance run (see the module docstring).

    Args:
        path: ``<state>/journal.jsonl``; must not exist (run :func:`recover` first).
        run_id: the run's id, written on every line.
        trash_for: maps a path about to be removed or backed up to the place it goes
            (same file system), given the step number.
        faults: fault-injection hooks.
        store: the session store that undoes and finishes its own intents
            (:meth:`Step.store_op`).
    """

    def __init__(self, path: Path, run_id: str, trash_for: Callable[[Path, int], Path],
                 faults: Faults, store: Any = None) -> None:
        self.path = path
        self.store = store
        self.run_id = run_id
        self.trash_for = trash_for
        self.faults = faults
        self._n = 0
        make_dirs(path.parent)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fsync_dir(path.parent)

    def append(self, rec: dict[str, Any], *, sync: bool = True) -> None:
        """Append one line; fsync it unless ``sync=False`` (intents and commits must be
        durable before what follows them; ``begin`` and ``done`` lines need not be:
        losing one only makes recovery redo idempotent work)."""
        data = (json.dumps({"run": self.run_id, **rec}, ensure_ascii=False) + "\n").encode()
        os.write(self._fd, data)
        if sync:
            os.fsync(self._fd)

    def begin(self, name: str) -> Step:
        """Start a step: act through it, then :meth:`Step.commit` or :meth:`Step.rollback`."""
        self._n += 1
        step = Step(self, f"{self._n:05d}", name)
        self.append({"step": step.id, "kind": "begin", "name": name}, sync=False)
        return step

    def close(self, *, remove: bool) -> None:
        """Close the journal; ``remove=True`` deletes it (every step is done)."""
        os.close(self._fd)
        if remove:
            self.path.unlink()
            fsync_dir(self.path.parent)


class Step:
    """One all-or-nothing group of file changes (see :class:`Journal`)."""

    def __init__(self, journal: Journal, sid: str, name: str) -> None:
        self.j, self.id, self.name = journal, sid, name
        self.intents: list[dict[str, Any]] = []
        self._k = 0
        self.closed = False

    def _intent(self, rec: dict[str, Any]) -> dict[str, Any]:
        rec = {"step": self.id, "kind": "intent", **rec}
        self.j.append(rec)
        self.intents.append(rec)
        self.j.faults.hit("intent")
        return rec

    def _aside(self, path: Path) -> Path:
        self._k += 1
        return self.j.trash_for(path, int(self.id)).with_name(f"{self._k}-{path.name}")

    def write(self, path: Path, data: bytes) -> None:
        """Create or replace the file ``path`` with ``data`` (backup first if it exists)."""
        if path.exists():
            backup = self._aside(path)
            self._intent({"op": "replace", "path": str(path), "tmp": str(temp_for(path)),
                          "backup": str(backup)})
            make_dirs(backup.parent)
            os.link(path, backup)
        else:
            self._intent({"op": "create", "path": str(path), "tmp": str(temp_for(path))})
        write_atomic(path, data, self.j.faults)
        self.j.faults.hit("action")

    def remove(self, path: Path) -> None:
        """Move the file or folder ``path`` to trash (deleted when the step commits)."""
        trash = self._aside(path)
        self._intent({"op": "remove", "path": str(path), "trash": str(trash)})
        make_dirs(trash.parent)
        os.rename(path, trash)
        fsync_dir(path.parent)
        self.j.faults.hit("action")

    def store_op(self, op: str, fields: Mapping[str, Any], act: Callable[[], None]) -> None:
        """Journal the session store's own intent ``{"op": op, **fields}`` (fsynced), then
        run ``act()``; the store undoes it (rollback, recovery) and finishes it (commit)."""
        if op in FILE_OPS:
            raise ValueError(f"{op!r} is a file intent; a store names its own")
        self._intent({"op": op, **fields})
        act()
        self.j.faults.hit("action")

    def commit(self) -> None:
        """Make the step final, then delete its backups and trash."""
        self.j.append({"step": self.id, "kind": "commit"})
        self.j.faults.hit("commit")
        for it in self.intents:
            _finish(it, self.j.store)
        self.j.append({"step": self.id, "kind": "done"}, sync=False)
        self.closed = True

    def rollback(self) -> list[str]:
        """Undo every intent of this step, newest first. Returns conflicts (if any)."""
        conflicts = [m for m in (_undo(it, self.j.store) for it in reversed(self.intents)) if m]
        self.j.append({"step": self.id, "kind": "done", "rolled_back": True})
        self.closed = True
        return conflicts
