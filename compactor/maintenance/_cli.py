"""``compactor health|maintain|schedule|archive``: the maintenance subsystem's commands.

Every command takes ``--config FILE`` (TOML, the ``[maintenance]`` table; default
``$COMPACTOR_CONFIG``), ``--store``, ``--ledger``, ``--archive`` (override the config) and
``--now ISO`` (measure ages at that time: for tests, drills and backfills).

Exit codes: ``health`` 0 ok / 1 warning / 2 critical; ``maintain --run`` 0 ok / 1 failed
(rolled back), a warning (it completed but skipped sessions whose archive is damaged; they
are named) or another run holds the lock; ``archive`` 0 ok / 1 an unknown id, a damaged or
missing archive, a session being written to, or another run holds the lock (one line on
stderr); 2 for bad input or config: a store, ledger or archive path that is missing, a
file where a folder is expected, or cannot be read or written (one line on stderr,
``compactor: error: PATH: problem; fix: ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compactor._errors import ConfigError
from compactor._sessions_cli import write_messages
from compactor.maintenance._archive import ArchiveError, entries, find, parse_iso
from compactor.maintenance._config import DEFAULT_TOML, MaintenanceConfig, load_config
from compactor.maintenance._health import check_health
from compactor.maintenance._maintain import (
    TASKS,
    Maintenance,
    MaintenanceBusy,
    RunReport,
    archive_now,
    mark,
    restore_to_store,
)
from compactor.maintenance._profile import Tier
from compactor.maintenance._scan import age_days
from compactor.maintenance._schedule import cron, systemd


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", help="TOML file with a [maintenance] table (default "
                   "$COMPACTOR_CONFIG; none: built-in defaults)")
    p.add_argument("--store", help="session store root, or a postgresql:// URL (default "
                   "$COMPACTOR_HOME or ./compactor-data)")
    p.add_argument("--ledger", help="ledger path (default $COMPACTOR_LEDGER or "
                   "./compactor-ledger/ledger.jsonl)")
    p.add_argument("--archive", help="JSON archive root (default <store>/archive; required "
                   "with a postgresql:// store)")
    p.add_argument("--now", help="measure ages at this ISO 8601 time (default: now, UTC)")
    return p


def add_maintenance_commands(sub: Any) -> None:
    """Register ``health``, ``maintain``, ``schedule`` and ``archive`` on argparse
    sub-parsers. Each command function returns an exit code."""
    common = _common()
    h = sub.add_parser("health", parents=[common], help="sizes, growth, activity, integrity; "
                       "exit 0 ok, 1 warning, 2 critical")
    h.add_argument("--json", action="store_true", help="print one JSON object")
    h.add_argument("--deep", action="store_true", help="also check every archive payload's "
                   "SHA-256")
    h.set_defaults(func=_health)

    m = sub.add_parser("maintain", parents=[common], help="rotate/gzip the ledger, apply age "
                       "tiers and retention, repair torn tails, vacuum")
    mode = m.add_mutually_exclusive_group(required=True)
    mode.add_argument("--assess", action="store_true", help="report what is due (read-only)")
    mode.add_argument("--dry-run", action="store_true", help="list every action (read-only)")
    mode.add_argument("--run", action="store_true", help="do it")
    mode.add_argument("--print-config", action="store_true", help="print the defaults as TOML")
    m.add_argument("--only", action="append", choices=TASKS, metavar="TASK",
                   help=f"run only these tasks (repeatable): {', '.join(TASKS)}")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=_maintain)

    s = sub.add_parser("schedule", parents=[common], help="print cron or systemd entries for "
                       "daily maintenance and 6-hourly health checks")
    s.add_argument("--print", required=True, choices=["cron", "systemd"], dest="what")
    s.set_defaults(func=_schedule)

    a = sub.add_parser("archive", help="list, show, add, restore and mark archived sessions")
    asub = a.add_subparsers(dest="archive_command", required=True)
    ls = asub.add_parser("list", parents=[common], help="one line per archived session")
    ls.add_argument("--tier", choices=[t.value for t in Tier], help="only this tier")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_archive_list)
    sh = asub.add_parser("show", parents=[common], help="an entry: tier, form, metadata")
    sh.add_argument("session_id")
    sh.set_defaults(func=_archive_show)
    ad = asub.add_parser("add", parents=[common], help="archive a live session now")
    ad.add_argument("session_id")
    ad.set_defaults(func=_archive_add)
    rs = asub.add_parser("restore", parents=[common], help="the full original history, "
                         "verified by content hash")
    rs.add_argument("session_id")
    rs.add_argument("--out", help="write the JSON list of messages to this file")
    rs.add_argument("--to-store", action="store_true", help="put it back into the live store")
    rs.set_defaults(func=_archive_restore)
    mk = asub.add_parser("mark", parents=[common], help="mark a session important")
    mk.add_argument("session_id")
    mk.add_argument("--unmark", action="store_true")
    mk.set_defaults(func=_archive_mark)


def _cfg(args: argparse.Namespace) -> MaintenanceConfig:
    return load_config(args.config).with_paths(store=args.store, ledger=args.ledger,
                                               archive=args.archive)


def _store_error(cfg: MaintenanceConfig) -> ConfigError | None:
    """Why the config's store folder cannot be the session store (missing, a file), or
    None (a ``postgresql://`` store is checked when it is opened)."""
    if cfg.store_url is not None:
        return None
    store = Path(cfg.store)
    if not store.exists():
        return ConfigError(f"no session store at {store} (no such folder); fix: pass --store DIR "
                           "(the folder given to `compactor replay --store`), set "
                           "$COMPACTOR_HOME, or set store in the config", field="store",
                           source=str(store))
    if not store.is_dir():
        return ConfigError(f"session store {store} is a file, not a folder; fix: pass the store "
                           "folder with --store DIR", field="store", source=str(store))
    return None


def _need_store(cfg: MaintenanceConfig) -> MaintenanceConfig:
    """``cfg`` when its store is an existing folder (commands that change a store never
    create one where a typo pointed), or a URL with an archive folder set.

    Raises:
        ConfigError: the store is missing or a file; a URL store without ``--archive``.
    """
    err = _store_error(cfg)
    if err is not None:
        raise err
    cfg.archive_root   # noqa: B018 - raises for a URL store without an archive folder
    return cfg


def _need_archive(cfg: MaintenanceConfig) -> MaintenanceConfig:
    """``cfg`` when its archive can be read: the archive folder exists, or the store it
    belongs to does (an archive not written yet is empty, not an error).

    Raises:
        ConfigError: neither exists, or the archive path is a file.
    """
    root = Path(cfg.archive_root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"archive {root} is a file, not a folder; fix: pass the archive "
                          "folder with --archive DIR", field="archive", source=str(root))
    if not root.exists():
        err = _store_error(cfg)
        if err is not None:
            raise err
    return cfg


def _now(args: argparse.Namespace) -> datetime:
    if not args.now:
        return datetime.now(timezone.utc)
    try:
        return parse_iso(args.now)
    except ValueError:
        raise ConfigError(f"--now {args.now!r} is not an ISO 8601 time; fix: e.g. "
                          "--now 2025-06-01T00:00:00Z", field="now") from None


def _health_input_problem(cfg: MaintenanceConfig) -> str | None:
    """The one-line problem when health has nothing to read where it was pointed: no ledger
    at the path (as ``compactor ledger tail`` says), a ledger path that is a folder."""
    from compactor.ledger._cli import ledger_exists, missing_ledger_line

    ledger = Path(cfg.ledger)
    if ledger.is_dir():
        return (f"{os.path.abspath(ledger)} is a folder, not a ledger file; fix: pass the "
                f"ledger's file, e.g. --ledger {ledger / 'ledger.jsonl'}")
    if not ledger_exists(ledger):
        return missing_ledger_line(ledger)
    err = _store_error(cfg)
    if err is not None and Path(cfg.store).exists():
        return str(err)     # a file where the store folder should be
    return None


def _num(n: int) -> str:
    return f"{n:,}"


# ----------------------------------------------------------------------------- health

def _health(args: argparse.Namespace) -> int:
    cfg, now = _cfg(args), _now(args)
    problem = _health_input_problem(cfg)
    if problem is None:
        try:
            rep = check_health(cfg, now=now, deep=args.deep)
        except ConfigError as e:  # a store URL that cannot be reached or used
            problem = str(e)
        except OSError as e:  # a path that cannot be read: bad input, like `ledger tail`
            where = e.filename if isinstance(e.filename, str) else cfg.ledger
            problem = (f"{where}: cannot be read ({e.strerror or e}); fix: run as a user who "
                       "may read the ledger, store and archive, or pass other paths")
        except Exception as e:  # a check that cannot run is a failed check: critical
            problem = (f"health check could not run: {type(e).__name__}: {e}; fix: run "
                       "`compactor ledger verify` and `compactor health --deep` to find the "
                       "damaged file")
    if problem is not None:
        if args.json:
            print(json.dumps({"status": "critical", "exit_code": 2, "error": problem,
                              "alerts": [{"name": "failed_check", "level": "critical",
                                          "message": problem}]}, ensure_ascii=False))
        print(f"compactor: error: {' '.join(problem.split())}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep.to_dict(), ensure_ascii=False))
        return rep.exit_code
    m = rep.metrics
    g = m["growth_bytes_per_day"] or {}

    def grow(k: str) -> str:
        return f", growth {g[k]:+,} bytes/day" if k in g else ""
    print(f"compactor health  {rep.now}  status: {rep.status.upper()} (exit {rep.exit_code})")
    print(f"ledger       {_num(m['ledger_bytes'])} bytes in {m['ledger_segments']} segments, "
          f"{_num(m['records'])} records{grow('ledger_bytes')}")
    print(f"store        {_num(m['store_bytes'])} bytes, {m['live_sessions']} live sessions"
          f"{grow('store_bytes')}")
    print(f"archive      {_num(m['archive_bytes'])} bytes, {m['archive_entries']} entries"
          f"{grow('archive_bytes')}")
    ratio = "n/a" if m["ratio"] is None else f"{m['ratio']:.1%}"
    print(f"compaction   last {m['last_compaction'] or 'never'}, ratio {ratio} over the last "
          f"{m['ratio_window_days']:g} days, {_num(m['compactions'])} compactions recorded")
    print(f"maintenance  last {m['last_maintenance'] or 'never'}"
          + (f" ({m['last_maintenance_status']})" if m["last_maintenance"] else ""))
    for c in rep.checks:
        print(f"check        {c['name']}: {'ok' if c['ok'] else 'FAILED'} ({c['detail']})")
    for a in rep.alerts:
        print(f"ALERT        {a['level']}: {a['name']}: {a['message']}")
    return rep.exit_code


# ----------------------------------------------------------------------------- maintain

def _maintain(args: argparse.Namespace) -> int:
    if args.print_config:
        print(DEFAULT_TOML, end="")
        return 0
    cfg = _need_store(_cfg(args))
    tasks = tuple(t for t in TASKS if not args.only or t in args.only)
    with Maintenance(cfg, now=_now(args)) as m:
        if args.assess or args.dry_run:
            rep = m.assess(tasks)
            rep.mode = "assess" if args.assess else "dry-run"
        else:
            try:
                rep = m.run(tasks)
            except MaintenanceBusy as e:
                return _fail(e)
    if args.json:
        print(json.dumps(rep.to_dict(), ensure_ascii=False))
    elif args.assess:
        _print_assess(m, rep)
    elif args.dry_run:
        _print_actions(rep, "would")
    else:
        _print_run(rep)
    return 1 if rep.status in ("failed", "warning") else 0


def _print_assess(m: Maintenance, rep: RunReport) -> None:
    s = rep.sizes_before
    print(f"compactor maintain --assess  now {m.now.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    print(f"store     {m.cfg.store_name}: {_num(s['store_bytes'])} bytes, "
          f"{s['live_sessions']} live sessions")
    print(f"archive   {m.cfg.archive_root}: {_num(s['archive_bytes'])} bytes, "
          f"{s['archive_entries']} entries")
    print(f"ledger    {m.ledger}: {_num(s['ledger_bytes'])} bytes, "
          f"{s['ledger_segments']} segments")
    print("sessions per tier (due): " + ", ".join(f"{k} {v}" for k, v in rep.tiers.items()))
    print(f"{'task':<10} {'actions':>7} {'bytes':>12}")
    for t in TASKS:
        if t not in rep.tasks:
            continue
        acts = [a for a in rep.actions if a.task == t]
        note = ""
        if t == "retention" and not _retention_set(m.cfg):
            note = "  (no retention rule set: nothing is deleted)"
        print(f"{t:<10} {len(acts):>7} {_num(sum(a.bytes for a in acts)):>12}{note}")
    print("apply with `compactor maintain --run`; `--dry-run` lists every action")


def _retention_set(cfg: MaintenanceConfig) -> bool:
    r = cfg.retention
    return r.keep_days is not None or r.delete_metadata_only_after_days is not None


def _print_actions(rep: RunReport, verb: str) -> None:
    for a in rep.actions:
        size = f"  [{_num(a.bytes)} bytes]" if a.bytes else ""
        print(f"{a.task:<10} {a.kind:<17} {a.target}  {a.detail}{size}")
    print(f"{len(rep.actions)} actions {verb} be taken" if verb == "would"
          else f"{len(rep.actions)} actions taken")


def _print_run(rep: RunReport) -> None:
    if rep.recovered:
        r = rep.recovered
        print(f"recovered interrupted run {r['run_id']}: rolled back {len(r['rolled_back'])} "
              f"step(s), finished {len(r['rolled_forward'])}"
              + (f", conflicts: {'; '.join(r['conflicts'])}" if r["conflicts"] else ""))
    counts = rep.counts()
    print(f"maintenance run {rep.run_id}: {rep.status}"
          + (f" ({rep.error}; step {rep.failed_step!r} rolled back)" if rep.error else ""))
    print("actions: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    b, a = rep.sizes_before, rep.sizes_after
    print(f"session bytes: {_num(b['sessions_bytes'])} -> {_num(a['sessions_bytes'])}"
          + _factor(rep.reduction_factor))
    print(f"ledger bytes:  {_num(b['ledger_bytes'])} -> {_num(a['ledger_bytes'])}")
    print("sessions per tier: " + ", ".join(f"{k} {v}" for k, v in rep.tiers.items()))
    for s in rep.skipped:
        print(f"skipped {s['session_id']} ({s['step']}): {s['reason']}")
    if rep.skipped:
        print(f"warning: {len(rep.skipped)} session(s) left as they are; fix the archive, then "
              "run again (`compactor health --deep` lists damaged entries)")
    for n in rep.notes:
        print(f"note: {n}")
    print(f"{rep.duration_s:.2f} s")


def _factor(f: float | None) -> str:
    """`` (xN smaller)`` or, when the bytes grew (a database keeps deleted rows' space
    until it reuses it), `` (xN larger)``."""
    if not f:
        return ""
    return f" (x{f:.2f} smaller)" if f >= 1 else f" (x{1 / f:.2f} larger)"


# ----------------------------------------------------------------------------- schedule

def _schedule(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    print((cron if args.what == "cron" else systemd)(cfg, args.config), end="")
    return 0


# ----------------------------------------------------------------------------- archive

def _archive_list(args: argparse.Namespace) -> int:
    cfg, now = _need_archive(_cfg(args)), _now(args)
    rows = [e for e in entries(cfg.archive_root).values() if not args.tier or e.tier == args.tier]
    if args.json:
        print(json.dumps([{"session_id": e.session_id, "tier": e.tier, "path": str(e.path),
                           "last_active": e.data["metadata"]["last_active"],
                           "important": e.important,
                           "stored_bytes": e.data["lossless"]["stored_bytes"]} for e in rows]))
        return 0
    print(f"{'session':<44} {'tier':<14} {'age (days)':>10} {'important':>9} {'bytes':>9}")
    for e in rows:
        print(f"{e.session_id:<44} {e.tier:<14} {age_days(now, e.last_active):>10.1f} "
              f"{'yes' if e.important else 'no':>9} "
              f"{_num(e.data['lossless']['stored_bytes']):>9}")
    print(f"{len(rows)} archived sessions")
    return 0


def _fail(e: Exception) -> int:
    """One line on stderr, exit 1 (an unknown id, a damaged archive, a busy store)."""
    print(f"compactor: error: {' '.join(str(e).split())}", file=sys.stderr)
    return 1


def _archive_show(args: argparse.Namespace) -> int:
    try:
        e = find(_need_archive(_cfg(args)).archive_root, args.session_id)
    except ArchiveError as err:
        return _fail(err)
    print(e.path.read_text(encoding="utf-8"), end="")
    return 0


def _archive_add(args: argparse.Namespace) -> int:
    try:
        with Maintenance(_need_store(_cfg(args)), now=_now(args)) as m:
            v = archive_now(m, args.session_id)
    except (ArchiveError, MaintenanceBusy) as e:
        return _fail(e)
    print(f"archived {v.session_id} ({v.due.value}, {v.age_days:.1f} days)")
    return 0


def _archive_restore(args: argparse.Namespace) -> int:
    cfg = _need_store(_cfg(args)) if args.to_store else _need_archive(_cfg(args))
    try:
        if args.to_store:
            with Maintenance(cfg, now=_now(args)) as m:
                d = restore_to_store(m, args.session_id)
            print(f"restored {args.session_id} into {d} (hash verified)")
            return 0
        msgs = find(cfg.archive_root, args.session_id).messages()
    except (ArchiveError, MaintenanceBusy) as e:
        return _fail(e)
    write_messages(msgs, args.out, " (hash verified)")
    return 0


def _archive_mark(args: argparse.Namespace) -> int:
    try:
        with Maintenance(_need_store(_cfg(args)), now=_now(args)) as m:
            where = mark(m, args.session_id, not args.unmark)
    except (ArchiveError, MaintenanceBusy) as e:
        return _fail(e)
    print(f"{'unmarked' if args.unmark else 'marked'} {args.session_id} important ({where})")
    return 0
