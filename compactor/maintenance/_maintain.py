"""``maintain``: plan and run the housekeeping tasks, crash-safely.

Tasks, in the order they run (``--only`` picks some):

``verify``    check the ledger; back up any torn last line, then cut it off and finish
              interrupted compressions (``compactor.ledger.verify(repair=True)``). Runs
              first so a torn tail is repaired before its segment is closed and gzipped.
``rotate``    close the active ledger segment when it holds records from an earlier UTC
              day or is over ``ledger_rotate_mb``, and gzip every closed plain segment.
``tiers``     archive live sessions past the full tier into ``archive/YYYY/MM`` and move
              archived sessions to the tier their age and importance call for.
``retention`` delete archived sessions a retention rule names (no rule is set by default).
``vacuum``    remove empty session folders, empty files and empty month folders.

Every store/archive change is a journaled step (:mod:`compactor.maintenance._txn`): the old
form is kept (hard-link backup or trash) until the step commits; an error rolls the step
back; a SIGKILL leaves the journal, and the next run rolls the interrupted step back
before it starts. Ledger tasks rely on the ledger's own crash-safe protocol (docs/ledger.md).
A run holds ``<state>/maintain.lock`` (``filelock``; ``<state>`` is ``<store>/.maintenance``,
or ``<archive>/.maintenance`` for a ``postgresql://`` store) and the store's ``run_lock``
(an advisory lock in PostgreSQL, so runs on several hosts never overlap), and takes a
live session's store lock (``lock_within``) for every read and write of it. It sees live
sessions only through the store protocol (``sessions``, ``stat``, ``export``, ``mark``,
``take_out``, ``put_in``, ``where``, ``usage``), never their layout, so a folder store and
a PostgreSQL store are maintained alike. It ends by writing ``<state>/last_run.json`` and
a ``maintenance`` ledger record with the sizes before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

from filelock import FileLock, Timeout

from compactor._errors import CompactorError
from compactor._store import SessionChangedError, SessionStoreProtocol, export_digest
from compactor.ledger import Ledger, verify
from compactor.ledger._compress import finish_compression
from compactor.ledger._segments import closed_name, list_segments, lock_path, next_segment, stem_of
from compactor.maintenance._archive import (
    ENTRY_SUFFIX,
    PAYLOAD_SUFFIX,
    ArchiveError,
    as_utc,
    build_entry,
    entry_name,
    find,
    pack,
    unpack,
    iso,
    messages_from_payload,
    month_dir,
    sha256,
)
from compactor.maintenance._config import MaintenanceConfig
from compactor.maintenance._profile import Tier, tier_form
from compactor.maintenance._scan import (
    DAY_S,
    SessionView,
    close_store,
    counter_for,
    live_sessions,
    open_store,
    retention_reason,
    sizes,
    views,
)
from compactor.maintenance._txn import (
    Faults,
    Journal,
    Step,
    fsync_dir,
    recover,
    write_atomic,
)

TASKS = ("verify", "rotate", "tiers", "retention", "vacuum")
#: Empty session folders younger than this are left alone (a session may be starting), s.
VACUUM_MIN_AGE_S = DAY_S
#: How long maintenance waits for a live session's store lock, s: a run then leaves the
#: session for a later run; ``archive add`` / ``restore --to-store`` refuse it.
SESSION_LOCK_TIMEOUT_S = 5.0
#: :func:`export_digest` of a session that holds nothing (vacuum removes only such).
EMPTY_DIGEST = export_digest(b"", None)


class MaintenanceBusy(CompactorError):
    """Another maintenance run holds the lock (``<state>/maintain.lock``, or the store's
    run lock)."""


@dataclass
class Action:
    """One thing a task does (or, in a plan, would do).

    Attributes:
        task: the task (see ``TASKS``).
        kind: ``repair_torn_tail``, ``rotate_segment``, ``gzip_segment``, ``archive``,
            ``drop_store_copy``, ``retier``, ``delete`` or ``vacuum``.
        target: a session id or a file.
        detail: why, in words (ages in days, tiers, sizes in bytes).
        bytes: bytes concerned (the live session, the segment, the file).
    """

    task: str
    kind: str
    target: str
    detail: str
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunReport:
    """The outcome of :meth:`Maintenance.run` (also the ``maintenance`` ledger record).

    Attributes:
        run_id: ``YYYYmmddTHHMMSSZ-<pid>``.
        mode: ``"run"``, ``"dry-run"`` or ``"assess"``.
        tasks: tasks selected.
        status: ``"ok"``, ``"warning"`` (the run completed but skipped sessions whose
            archive is damaged: see ``skipped``), ``"failed"`` (a step was rolled back and
            the run stopped) or ``"planned"`` (dry run / assessment).
        actions: actions done (or planned).
        error: ``"<ExceptionType>: message"`` of the failure.
        failed_step: the step that failed and was rolled back.
        recovered: what this run found and fixed from an interrupted run (or ``None``).
        sizes_before, sizes_after: :func:`compactor.maintenance._scan.sizes`, bytes.
        tiers: sessions per tier after the run (or, planned, due).
        duration_s: wall time, seconds.
        skipped: sessions left exactly as they were because their archive is damaged
            (``{"session_id", "step", "reason"}``); the run went on with the others.
        notes: problems that did not fail the run (e.g. the ledger record could not be written).
    """

    run_id: str
    mode: str
    tasks: list[str]
    status: str = "ok"
    actions: list[Action] = field(default_factory=list)
    error: str | None = None
    failed_step: str | None = None
    recovered: dict[str, Any] | None = None
    sizes_before: dict[str, int] = field(default_factory=dict)
    sizes_after: dict[str, int] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def reduction_factor(self) -> float | None:
        """Session bytes before / after (store + archive); ``None`` when nothing is stored."""
        b, a = self.sizes_before.get("sessions_bytes"), self.sizes_after.get("sessions_bytes")
        return round(b / a, 3) if b and a else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.kind] = out.get(a.kind, 0) + 1
        return out

    def to_record(self) -> dict[str, Any]:
        """The ``maintenance`` ledger record's fields (no message text)."""
        return {"action": "maintain", "run_id": self.run_id, "mode": self.mode,
                "tasks": self.tasks, "status": self.status, "error": self.error,
                "failed_step": self.failed_step, "rolled_back": self.failed_step is not None,
                "recovered": self.recovered, "sizes_before": self.sizes_before,
                "sizes_after": self.sizes_after, "reduction_factor": self.reduction_factor,
                "counts": self.counts(), "tiers": self.tiers,
                "deleted": [a.target for a in self.actions if a.kind == "delete"],
                "skipped": [dict(s) for s in self.skipped],
                "duration_s": round(self.duration_s, 3)}

    def to_dict(self) -> dict[str, Any]:
        d = self.to_record()
        d.update(actions=[a.to_dict() for a in self.actions], notes=self.notes)
        return d


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Maintenance:
    """Plans and runs maintenance over one store, archive and ledger.

    Args:
        cfg: the configuration (paths, tiers, importance, retention).
        now: the time ages are measured at (aware datetime; default: UTC now). Tests and
            backfills pass it explicitly; it is also the ``ts`` of the ledger record.
        faults: where progress points are reported (default: ``_txn.step_hook``, a no-op;
            tests replace it in their own child processes).
    """

    def __init__(self, cfg: MaintenanceConfig, *, now: datetime | None = None,
                 faults: Faults | None = None) -> None:
        self.cfg = cfg
        self.now = as_utc(now) if now is not None else _utc_now()
        self.faults = faults or Faults()
        self.counter = counter_for(cfg)
        self.ledger = Path(os.path.abspath(cfg.ledger))
        self.state_dir = cfg.state_dir
        self.journal_path = self.state_dir / "journal.jsonl"
        self.run_id = self.now.strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"
        self._store: SessionStoreProtocol | None = None

    def store(self, *, create: bool = False) -> SessionStoreProtocol | None:
        """The live session store, one instance per run (its in-process session locks are
        shared by every step); None when there is none and ``create`` is false (a
        ``postgresql://`` store is always opened; ``create`` migrates its schema).

        Raises:
            ConfigError: a URL store that cannot be reached or has an unusable schema.
        """
        if self._store is None:
            self._store = open_store(self.cfg, create=create)
        return self._store

    def close(self) -> None:
        """Release the store (a ``PostgresStore``'s connections); a later call reopens it."""
        store, self._store = self._store, None
        close_store(store)

    def __enter__(self) -> "Maintenance":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def views(self) -> list[SessionView]:
        """Every session, live ones read under their store lock (see ``_scan.views``)."""
        return views(self.cfg, self.now, self.counter, self.store(),
                     lock_timeout_s=SESSION_LOCK_TIMEOUT_S)

    # ------------------------------------------------------------------ planning (read-only)

    def plan(self, tasks: tuple[str, ...] = TASKS,
             vs: list[SessionView] | None = None) -> list[Action]:
        """What :meth:`run` would do now, without writing anything (``vs``: the sessions,
        when already read)."""
        actions: list[Action] = []
        if "verify" in tasks:
            actions += self._plan_verify()
        if "rotate" in tasks:
            actions += self._plan_rotate()
        vs = self.views() if vs is None else vs
        if "tiers" in tasks:
            actions += [a for v in vs for a in self._plan_tier(v)]
        if "retention" in tasks:
            actions += self._plan_retention(vs, projected="tiers" in tasks)
        if "vacuum" in tasks:
            actions += self._plan_vacuum()
        return actions

    def tier_counts(self, vs: list[SessionView], *, due: bool) -> dict[str, int]:
        """Sessions per tier, now (``due=False``) or as due."""
        out = {t.value: 0 for t in Tier}
        for v in vs:
            out[(v.due if due else v.tier).value] += 1
        return out

    def _plan_verify(self) -> list[Action]:
        if not self._ledger_exists():
            return []
        rep = verify(self.ledger)
        acts = [Action("verify", "repair_torn_tail", b.file, f"torn line at byte {b.offset} "
                       f"({b.length} bytes, {b.reason})", b.length)
                for b in rep.torn if b.at_tail and not b.file.endswith(".gz")]
        acts += [Action("verify", "gzip_segment", p, "finish an interrupted compression")
                 for p in rep.pending if not p.endswith(".tmp")]
        return acts

    def _ledger_exists(self) -> bool:
        return self.ledger.exists() or bool(list_segments(self.ledger).segments)

    def _rotation_due(self) -> str | None:
        """Why the active segment should be closed now, or ``None``."""
        try:
            size = self.ledger.stat().st_size
            with open(self.ledger, "rb") as fh:
                first = fh.readline()
        except FileNotFoundError:
            return None
        if size == 0:
            return None
        if size > self.cfg.ledger_rotate_mb * 1e6:
            return f"{size:,} bytes > ledger_rotate_mb ({self.cfg.ledger_rotate_mb:g} MB)"
        try:
            day = json.loads(first)["ts"][:10]
        except (ValueError, KeyError, TypeError):
            return None
        if day < self.now.strftime("%Y-%m-%d"):
            return f"holds records from {day}"
        return None

    def _plan_rotate(self) -> list[Action]:
        acts = []
        why = self._rotation_due()
        if why:
            acts.append(Action("rotate", "rotate_segment", str(self.ledger), why,
                               self.ledger.stat().st_size))
        for s in list_segments(self.ledger).segments:
            if s.plain is not None:
                acts.append(Action("rotate", "gzip_segment", str(s.plain), "closed, not gzipped",
                                   s.plain.stat().st_size))
        if why:
            acts.append(Action("rotate", "gzip_segment", str(self.ledger) + " (closed)",
                               "the segment closed above"))
        return acts

    def _plan_tier(self, v: SessionView) -> list[Action]:
        why = (f"{v.age_days:.1f} days, importance {v.importance.score:.2f}"
               f"{' (important)' if v.importance.important else ''}")
        if v.live is not None:
            if v.due is Tier.FULL or v.busy:
                return []
            assert v.loaded is not None
            same = v.entry is not None and v.entry.data["lossless"]["sha256"] == v.loaded.sha
            kind = "drop_store_copy" if same else "archive"
            return [Action("tiers", kind, v.session_id, f"{why} -> {v.due.value}", v.live.bytes)]
        if v.entry is not None and v.due is not v.tier:
            return [Action("tiers", "retier", v.session_id, f"{why}: {v.tier.value} -> "
                           f"{v.due.value}", v.entry.path.stat().st_size)]
        return []

    def _plan_retention(self, vs: list[SessionView], *, projected: bool) -> list[Action]:
        acts = []
        for v in vs:
            archived = v.live is None or (projected and v.due is not Tier.FULL)
            tier = v.due if projected else v.tier
            reason = retention_reason(v, tier, self.cfg) if archived else None
            if reason:
                acts.append(Action("retention", "delete", v.session_id,
                                   f"{v.age_days:.1f} days, {tier.value}: {reason}"))
        return acts

    def _vacuum_targets(self) -> list[tuple[Path | str, str, str | None]]:
        """``(path, why, None)`` of every file or folder vacuum removes, and ``(where,
        why, session id)`` of every empty live session."""
        out: list[tuple[Path | str, str, str | None]] = []
        now_s = self.now.timestamp()
        store = self.store()
        for s in live_sessions(store):
            if s.empty and now_s - s.last_active.timestamp() > VACUUM_MIN_AGE_S:
                assert store is not None
                out.append((store.where(s.session_id),
                            "session folder with no archive and no state"
                            if self.cfg.store_url is None else
                            "session with no archive and no state", s.session_id))
        root = self.cfg.archive_root
        if root.is_dir():
            for month in sorted(root.glob("[0-9]*/[0-9]*")):
                for f in sorted(month.iterdir()):
                    if f.is_file() and f.stat().st_size == 0:
                        out.append((f, "empty file", None))
                    elif f.name.startswith(".") and f.name.endswith(".tmp"):
                        out.append((f, "leftover temp file", None))
        for trash in (self.state_dir / "trash", root / ".trash"):
            if trash.is_dir():
                out += [(d, "empty trash folder", None) for d in sorted(trash.iterdir())
                        if d.is_dir() and not any(p.is_file() for p in d.rglob("*"))]
        if root.is_dir():
            for month in sorted(root.glob("[0-9]*/[0-9]*")):
                if month.is_dir() and not any(month.iterdir()):
                    out.append((month, "empty month folder", None))
        return out

    def _plan_vacuum(self) -> list[Action]:
        return [Action("vacuum", "vacuum", str(p), why) for p, why, _ in self._vacuum_targets()]

    # ------------------------------------------------------------------ running

    def assess(self, tasks: tuple[str, ...] = TASKS) -> RunReport:
        """A read-only report: sizes now, sessions per tier as due, and the plan."""
        t0 = time.perf_counter()
        rep = RunReport(self.run_id, "assess", list(tasks), status="planned")
        rep.sizes_before = sizes(self.cfg, self.store())
        vs = self.views()
        rep.actions = self.plan(tasks, vs)
        rep.tiers = self.tier_counts(vs, due=True)
        rep.duration_s = time.perf_counter() - t0
        return rep

    @contextmanager
    def _locked(self, timeout_s: float) -> Iterator[dict[str, Any] | None]:
        """Hold the maintenance lock (the state folder's file lock, then the store's run
        lock); first recover what an interrupted run left. Yields the recovery report
        (``None`` when there was nothing to recover)."""
        store = self.store(create=self.cfg.store_url is not None)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = FileLock(str(self.state_dir / "maintain.lock"), mode=0o600)
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise MaintenanceBusy(f"another maintenance run holds {lock.lock_file}; fix: wait "
                                  "for it to finish (or check `compactor health`)") from None
        try:
            with ExitStack() as stack:
                if store is not None:
                    try:
                        stack.enter_context(store.run_lock(timeout_s))
                    except TimeoutError:
                        raise MaintenanceBusy(
                            f"another maintenance run holds the run lock of "
                            f"{self.cfg.store_name}; fix: wait for it to finish (or check "
                            "`compactor health`)") from None
                yield (recover(self.journal_path, store).to_dict()
                       if self.journal_path.exists() else None)
        finally:
            lock.release()

    def run(self, tasks: tuple[str, ...] = TASKS) -> RunReport:
        """Run the tasks under the maintenance lock (see the module docstring).

        Raises:
            MaintenanceBusy: another run holds the lock.
            OSError: the state folder or the lock cannot be created (nothing changed).
        """
        t0 = time.perf_counter()
        rep = RunReport(self.run_id, "run", list(tasks))
        with self._locked(0) as recovered:
            rep.recovered = recovered
            rep.sizes_before = sizes(self.cfg, self.store())
            journal = Journal(self.journal_path, self.run_id, self._trash_for, self.faults,
                              self.store())
            clean = True
            try:
                for task in TASKS:
                    if task in tasks:
                        getattr(self, f"_run_{task}")(journal, rep)
            except Exception as e:  # noqa: BLE001 - any failure is rolled back and recorded
                rep.status = "failed"
                rep.error = f"{type(e).__name__}: {e}"
                rep.failed_step = getattr(e, "maintenance_step", None) or (
                    "(ledger task)" if isinstance(e, (OSError, CompactorError))
                    else "(outside a step)")
                clean = not getattr(e, "rollback_failed", False)
            finally:
                try:
                    journal.close(remove=clean)
                except OSError as e:
                    rep.notes.append(f"journal kept: {e}")
            if rep.status == "ok" and rep.skipped:
                rep.status = "warning"
            rep.sizes_after = sizes(self.cfg, self.store())
            rep.tiers = self.tier_counts(self.views(), due=False)
            rep.duration_s = time.perf_counter() - t0
            self._record(rep)
        return rep

    def one_step(self, name: str, body: Callable[[Step], None], *, timeout_s: float = 30,
                 inside: Callable[[], ContextManager[Any]] | None = None) -> None:
        """Run ``body(step)`` as one journaled step under the maintenance lock (the
        ``archive add|restore --to-store|mark`` commands); ``inside()``, when given, is a
        further lock taken after the maintenance lock (a session's store lock: the same
        order as a run takes them).

        Raises:
            MaintenanceBusy: the lock was not free within ``timeout_s`` seconds.
            OSError, CompactorError: from ``body``; the step was rolled back.
        """
        with self._locked(timeout_s), (inside() if inside is not None else nullcontext()):
            journal = Journal(self.journal_path, self.run_id, self._trash_for, self.faults,
                              self.store())
            clean = True
            try:
                self._step(journal, name, body)
            except BaseException as e:
                clean = not getattr(e, "rollback_failed", False)
                raise
            finally:
                journal.close(remove=clean)

    def _trash_for(self, path: Path, step: int) -> Path:
        root = self.cfg.archive_root
        try:
            path.relative_to(root)
            base = root / ".trash"
        except ValueError:
            base = self.state_dir / "trash"
        return base / self.run_id / f"{step:05d}" / path.name

    def _step(self, journal: Journal, name: str, body: Callable[[Step], None]) -> None:
        """Run ``body(step)`` as one journaled step; on error roll it back and re-raise
        with the step's name attached."""
        step = journal.begin(name)
        try:
            body(step)
            step.commit()
        except BaseException as e:
            if not step.closed:
                try:
                    step.rollback()
                except Exception:  # noqa: BLE001 - a file or store error: the journal stays
                    e.rollback_failed = True  # type: ignore[attr-defined]
            e.maintenance_step = name  # type: ignore[attr-defined]
            raise

    def _step_or_skip(self, journal: Journal, rep: RunReport, session_id: str, name: str,
                      body: Callable[[Step], None]) -> bool:
        """:meth:`_step` for one session's step; a damaged archive (``ArchiveError``,
        the step rolled back) skips the session and is reported in ``rep.skipped`` instead
        of stopping the run. Returns whether the step was done."""
        try:
            self._step(journal, name, body)
        except ArchiveError as e:
            if getattr(e, "rollback_failed", False):
                raise
            rep.skipped.append({"session_id": session_id, "step": name, "reason": str(e)})
            return False
        return True

    def _record(self, rep: RunReport) -> None:
        """Write last_run.json and the ``maintenance`` ledger record (failures -> notes)."""
        body = json.dumps({"ts": iso(self.now), **rep.to_dict()}, ensure_ascii=False, indent=1)
        try:
            write_atomic(self.state_dir / "last_run.json", body.encode("utf-8") + b"\n")
        except OSError as e:
            rep.notes.append(f"last_run.json not written: {e}")
        try:
            now = self.now
            with Ledger(self.ledger, clock=lambda: now) as ledger:
                ledger.emit("maintenance", rep.to_record())
        except (OSError, CompactorError) as e:
            rep.notes.append(f"ledger record not written: {e}")

    # ------------------------------------------------------------------ tasks

    def _run_verify(self, journal: Journal, rep: RunReport) -> None:
        if not self._ledger_exists():
            return
        self.faults.hit("ledger")
        found = verify(self.ledger)
        tails = [b for b in found.torn if b.at_tail and not b.file.endswith(".gz")]
        if tails:
            def backup(step: Any) -> None:
                for b in tails:
                    with open(b.file, "rb") as fh:
                        fh.seek(b.offset)
                        data = fh.read(b.length)
                    step.write(self.state_dir / "torn" /
                               f"{self.run_id}-{Path(b.file).name}-{b.offset}.bin", data)
            self._step(journal, "backup torn ledger tails", backup)
        fixed = verify(self.ledger, repair=True)
        for r in fixed.repairs:
            kind = "repair_torn_tail" if r.action == "truncate_torn_tail" else "gzip_segment"
            if r.action != "remove_temp":
                rep.actions.append(Action("verify", kind, r.file, r.action, r.length or 0))

    def _run_rotate(self, journal: Journal, rep: RunReport) -> None:
        if not self._ledger_exists():
            return
        self.faults.hit("ledger")
        with FileLock(str(lock_path(self.ledger))):
            why = self._rotation_due()
            if why:
                with open(self.ledger, "rb") as fh:
                    first = json.loads(fh.readline())["ts"][:10].replace("-", "")
                keys = [s.key for s in list_segments(self.ledger).segments]
                day, seq = next_segment(keys, first)
                closed = self.ledger.with_name(closed_name(stem_of(self.ledger), day, seq))
                size = self.ledger.stat().st_size
                os.rename(self.ledger, closed)
                fsync_dir(self.ledger.parent)
                rep.actions.append(Action("rotate", "rotate_segment", str(closed), why, size))
        for r in finish_compression(self.ledger, wait=True):
            if r.action == "finish_gzip":
                rep.actions.append(Action("rotate", "gzip_segment", r.file, "gzipped"))

    def _run_tiers(self, journal: Journal, rep: RunReport) -> None:
        for v in self.views():
            for a in self._plan_tier(v):
                if a.kind == "retier":
                    done = self._step_or_skip(journal, rep, v.session_id, f"retier {v.session_id}",
                                              lambda step, v=v: self._retier(step, v))
                else:
                    done = self._archive_live(journal, rep, v, a)
                if done:
                    rep.actions.append(a)

    def _archive_live(self, journal: Journal, rep: RunReport, v: SessionView,
                      action: Action) -> bool:
        store = self.store()
        assert store is not None and v.loaded is not None
        loaded = v.loaded
        try:
            with _session_lock(store, v.session_id, _Busy()):
                if not _unchanged(store, v):
                    action.detail += " (skipped: written to since the plan)"
                    return True
                return self._step_or_skip(journal, rep, v.session_id, f"archive {v.session_id}",
                                          lambda step: self._archive_step(step, v, loaded))
        except SessionChangedError:     # written to between the check and the removal
            action.detail += " (skipped: written to since the plan)"
            return True
        except _Busy:
            action.detail += " (skipped: being written to)"
            return True

    def _entry_bytes(self, v: SessionView, tier: Tier, form: dict[str, Any] | None,
                     metadata: dict[str, Any], lossless: dict[str, Any], state: Any,
                     history: list[dict[str, Any]]) -> bytes:
        return build_entry(session_id=v.session_id, tier=tier.value, now=self.now,
                           age_days=v.age_days, importance=v.importance.to_dict(),
                           metadata=metadata, form=form, lossless=lossless, state=state,
                           history=history + [{"tier": tier.value, "at": iso(self.now)}])

    def _archive_step(self, step: Any, v: SessionView, loaded: Any) -> None:
        """Write the entry and payload of a live session, check the payload reads back,
        then move the session out of the live store (call under its store lock)."""
        s, store = v.live, self.store()
        assert s is not None and store is not None
        name = entry_name(v.session_id)
        old = v.entry
        if old is not None and old.data["lossless"]["sha256"] == loaded.sha \
                and old.payload_path.exists():
            entry_path, payload_path = old.path, old.payload_path
            gz = payload_path.read_bytes()
        else:
            folder = month_dir(self.cfg.archive_root, s.last_active)
            entry_path = folder / (name + ENTRY_SUFFIX)
            payload_path = folder / (name + PAYLOAD_SUFFIX)
            gz = pack(loaded.payload)
            step.write(payload_path, gz)
            if old is not None and old.path != entry_path:
                step.remove(old.path)
                if old.payload_path.exists():
                    step.remove(old.payload_path)
        p = loaded.profile
        metadata = {"participants": p.participants, "first_seen": iso(s.first_seen),
                    "last_active": iso(s.last_active), "messages": p.messages,
                    "tokens": p.tokens, "turns": p.turns, "tool_calls": p.tool_calls,
                    "tools": p.tools, "errors": p.errors, "outcome": p.outcome,
                    "format": p.format,
                    "compaction_count": (loaded.state or {}).get("compaction_count", 0)}
        lossless = {"file": payload_path.name, "sha256": loaded.sha, "bytes": len(loaded.payload),
                    "stored_bytes": len(gz), "messages": p.messages,
                    "encoding": "gzip, hash-elided",
                    "content": "store archive lines {ordinal, hash, prev, message} and {tip}"}
        form = tier_form(v.due, loaded.messages, p.tokens, self.cfg.tiers, self.counter)
        history = list(old.data.get("history", [])) if old is not None else []
        step.write(entry_path, self._entry_bytes(v, v.due, form, metadata, lossless,
                                                 loaded.state, history))
        if sha256(unpack(payload_path.read_bytes())) != loaded.sha:
            raise ArchiveError(f"payload {payload_path} read back with a different hash; the "
                               "session stays in the live store", path=str(payload_path))
        store.take_out(v.session_id, step, expect=loaded.digest)

    def _retier(self, step: Any, v: SessionView) -> None:
        e = v.entry
        assert e is not None
        # verify the lossless payload first (for every target tier): a damaged one raises
        # ArchiveError before anything is written, so the session is skipped as it is
        payload = e.payload(check=True)
        msgs = messages_from_payload(payload) if v.due in (Tier.KEY_POINTS, Tier.BRIEF) else []
        form = tier_form(v.due, msgs, int(e.data["metadata"]["tokens"]), self.cfg.tiers,
                         self.counter)
        step.write(e.path, self._entry_bytes(v, v.due, form, e.data["metadata"],
                                             e.data["lossless"], e.data.get("state"),
                                             list(e.data.get("history", []))))

    def _run_retention(self, journal: Journal, rep: RunReport) -> None:
        vs = {v.session_id: v for v in self.views()}
        skipped = {s["session_id"] for s in rep.skipped}
        for a in self._plan_retention(list(vs.values()), projected=False):
            if a.target in skipped:
                continue

            def delete(step: Any, e: Any = vs[a.target].entry) -> None:
                e.payload(check=True)   # a damaged session is kept for the operator to see
                step.remove(e.payload_path)
                step.remove(e.path)
            if self._step_or_skip(journal, rep, a.target, f"delete {a.target}", delete):
                rep.actions.append(a)

    def _run_vacuum(self, journal: Journal, rep: RunReport) -> None:
        store = self.store()
        for path, why, session_id in self._vacuum_targets():
            if session_id is not None:
                assert store is not None
                if not self._vacuum_session(journal, store, session_id):
                    continue
            elif not isinstance(path, Path):
                continue
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                self._step(journal, f"vacuum {path.name}", lambda step, p=path: step.remove(p))
            rep.actions.append(Action("vacuum", "vacuum", str(path), why))

    def _vacuum_session(self, journal: Journal, store: SessionStoreProtocol,
                        session_id: str) -> bool:
        """Take an empty live session out of the store under its store lock, if it is
        still empty there. Returns whether it was removed."""
        try:
            with _session_lock(store, session_id, _Busy()):
                st = store.stat(session_id)
                if st is None or not st.empty:
                    return False
                self._step(journal, f"vacuum {session_id}", lambda step: store.take_out(
                    session_id, step, expect=EMPTY_DIGEST))
                return True
        except (_Busy, SessionChangedError):
            return False



# --------------------------------------------------------------------------- one-off operations

def archive_now(m: Maintenance, session_id: str) -> SessionView:
    """Archive one live session now, in the tier its age calls for (``full`` when young:
    the archive then holds only the lossless form), and remove it from the live store.

    Like a scheduled run, it holds the maintenance lock, then the session's store lock, and
    refuses a session that is being written to (its lock is held for more than
    ``SESSION_LOCK_TIMEOUT_S``) or was written to since it was read.

    Raises:
        ArchiveError: no live session with that id, or it is being written to.
        MaintenanceBusy: a maintenance run holds the lock.
    """
    busy = ArchiveError(f"session {session_id!r} is being written to; not archived; fix: "
                        "retry when the agent using it is idle")
    v = next((x for x in m.views() if x.session_id == session_id and x.live is not None), None)
    if v is not None and v.busy:
        raise busy
    store = m.store()
    if v is None or v.loaded is None or store is None:
        raise ArchiveError(f"no live session {session_id!r} under {m.cfg.store_name}; fix: "
                           "check the id with `compactor sessions list`")
    loaded = v.loaded

    def body(step: Step) -> None:
        if not _unchanged(store, v):
            raise busy
        try:
            m._archive_step(step, v, loaded)
        except SessionChangedError:
            raise busy from None
    m.one_step(f"archive {session_id}", body,
               inside=lambda: _session_lock(store, session_id, busy))
    return v


class _Busy(Exception):
    """A live session's store lock stayed held (a run leaves the session for later)."""


@contextmanager
def _session_lock(store: SessionStoreProtocol, session_id: str,
                  busy: Exception) -> Iterator[None]:
    """Hold a live session's store lock; raise ``busy`` when a writer keeps it longer
    than ``SESSION_LOCK_TIMEOUT_S`` (only taking the lock raises it)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(store.lock_within(session_id, SESSION_LOCK_TIMEOUT_S))
        except TimeoutError:
            raise busy from None
        yield


def _unchanged(store: SessionStoreProtocol, v: SessionView) -> bool:
    """Whether a live session is as it was when ``v`` was read (call under its lock):
    still there, no newer activity, the same archive bytes."""
    assert v.live is not None and v.loaded is not None
    fresh = store.stat(v.session_id)
    if fresh is None or fresh.last_active > v.live.last_active:
        return False
    return sha256(store.export(v.session_id)[0]) == v.loaded.sha


def restore_to_store(m: Maintenance, session_id: str) -> str:
    """Put an archived session back into the live store (hash-verified): its archive lines
    and its state, through the store's ``put_in``, in one journaled step under the
    session's store lock. The archive entry stays. Returns where it went
    (``store.where``: its folder, or the database and id).

    Raises:
        ArchiveError: no entry, a damaged payload, or the session is already live.
    """
    e = find(m.cfg.archive_root, session_id)
    payload = e.payload(check=True)
    store = m.store(create=True)
    assert store is not None
    d = store.where(session_id)
    state = e.data.get("state")
    busy = ArchiveError(f"session {session_id!r} is being written to in the live store ({d}); "
                        "fix: use `compactor sessions restore` for it")

    def body(step: Step) -> None:
        # checked (by put_in) under the maintenance lock and the session's store lock, so
        # a writer using that lock cannot create the session between the check and the writes
        try:
            store.put_in(session_id, payload, state, step)
        except FileExistsError:
            raise ArchiveError(f"session {session_id!r} is already in the live store ({d}); "
                               "fix: use `compactor sessions restore` for it") from None
    m.one_step(f"restore {session_id}", body,
               inside=lambda: _session_lock(store, session_id, busy))
    return d


def mark(m: Maintenance, session_id: str, marked: bool = True) -> str:
    """Mark (or unmark) a session important: in the live store (the store's ``mark``),
    or ``importance.marked`` in its archive entry. Returns where the mark went.

    Raises:
        ArchiveError: the session is neither live nor archived.
    """
    v = next((x for x in m.views() if x.session_id == session_id), None)
    store = m.store()
    if v is None:
        raise ArchiveError(f"no session {session_id!r} in {m.cfg.store_name} or its archive; fix: "
                           "check the id with `compactor archive list`")
    if v.live is not None and store is not None:
        if v.live.marked != marked:
            m.one_step(f"{'mark' if marked else 'unmark'} {session_id}",
                       lambda step: store.mark(session_id, marked))
        return store.where(session_id)
    e = v.entry
    assert e is not None
    data = dict(e.data)
    imp = dict(data["importance"])
    imp["marked"] = marked
    imp["score"] = 1.0 if marked else round(min(1.0, sum(imp.get("signals", {}).values())), 4)
    imp["important"] = marked or imp["score"] >= m.cfg.importance.threshold
    data["importance"] = imp
    body = (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    m.one_step(f"mark {session_id}", lambda step: step.write(e.path, body))
    return str(e.path)
