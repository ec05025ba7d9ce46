"""``health``: sizes, growth, activity and integrity, and the alerts they raise. Read-only.

Alert conditions (our spec; thresholds and levels in ``[maintenance.health]``):

=================  ===============================================  ==========
alert              condition                                        default
=================  ===============================================  ==========
no_compaction      the last compaction record is older than         warning
                   ``no_compaction_days`` (2), or there is none
ledger_size        the ledger's files take more than                warning
                   ``ledger_max_mb`` (50 MB = 50 * 10^6 bytes)
compaction_ratio   ``1 - sum(tokens_after) / sum(tokens_before)``   warning
                   over the last ``ratio_window_days`` (7) is
                   under ``min_compaction_ratio`` (0.5)
failed_check       a check below fails                              critical
=================  ===============================================  ==========

Checks: ``ledger_integrity`` (every line of every segment is a record: no torn or invalid
line), ``archive_integrity`` (every entry parses and its payload exists with the recorded
size; with ``deep``, its SHA-256 matches too), ``last_maintenance`` (the last run did not
fail and skipped no session with a damaged archive), ``interrupted_maintenance`` (no journal left by a killed run while no run holds the
lock). Exit code: 0 no alert, 1 a warning, 2 a critical alert.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from compactor.ledger import read_records
from compactor.maintenance._archive import (
    ArchiveError,
    as_utc,
    entry_files,
    iso,
    parse_iso,
    read_entry,
)
from compactor.maintenance._config import MaintenanceConfig
from compactor.maintenance._scan import DAY_S, age_days, close_store, open_store, sizes

EXIT = {"ok": 0, "warning": 1, "critical": 2}


@dataclass
class HealthReport:
    """The outcome of :func:`check_health`.

    Attributes:
        now: when it was measured (ISO 8601, UTC).
        status: ``"ok"``, ``"warning"`` or ``"critical"`` (the worst alert).
        metrics: sizes (bytes), counts, growth (bytes per day since the last maintenance
            run), ledger records, compaction ratio (0..1) and times (ISO 8601).
        checks: ``[{"name", "ok", "detail"}]``.
        alerts: ``[{"name", "level", "message"}]``.
    """

    now: str
    status: str = "ok"
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 ok, 1 warning, 2 critical (for cron and monitors)."""
        return EXIT[self.status]

    def alert(self, name: str, level: str, message: str) -> None:
        self.alerts.append({"name": name, "level": level, "message": message})
        if EXIT[level] > EXIT[self.status]:
            self.status = level

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now, "status": self.status, "exit_code": self.exit_code,
                "metrics": self.metrics, "checks": self.checks, "alerts": self.alerts}


def _ledger_facts(ledger: Path, now: datetime, window_days: float) -> dict[str, Any]:
    """Records, last compaction, compaction ratio over the window, last maintenance run."""
    since = (now - timedelta(days=window_days)).strftime("%Y-%m-%dT%H:%M:%S")
    records = compactions = 0
    before = after = 0
    last_comp: str | None = None
    last_maint: dict[str, Any] | None = None
    recs = read_records(ledger)
    for r in recs:
        records += 1
        ev = r.get("event")
        if ev == "compaction":
            compactions += 1
            last_comp = max(last_comp or "", r["ts"])
            if r["ts"] >= since and isinstance(r.get("tokens_before"), int) \
                    and isinstance(r.get("tokens_after"), int):
                before += r["tokens_before"]
                after += r["tokens_after"]
        elif ev == "maintenance" and r.get("action") == "maintain" and r.get("mode") == "run":
            if last_maint is None or r["ts"] >= last_maint["ts"]:
                last_maint = r
    return {"records": records, "compactions": compactions, "last_compaction": last_comp,
            "ratio": round(1 - after / before, 4) if before else None,
            "ratio_tokens_before": before, "last_maintenance": last_maint,
            "bad_lines": (len(recs.report.torn), len(recs.report.invalid))}


def check_health(cfg: MaintenanceConfig, *, now: datetime, deep: bool = False) -> HealthReport:
    """Measure and judge (see the module docstring). Writes nothing (a ``postgresql://``
    store is read through its protocol, its schema only checked).

    Args:
        cfg: paths and ``[maintenance.health]`` thresholds.
        now: the time ages are measured at (aware datetime).
        deep: also verify every archive payload's SHA-256 (reads every payload).

    Raises:
        ConfigError: a URL store without an archive folder, or one that cannot be
            reached or whose schema is behind.
    """
    now = as_utc(now)
    h = cfg.health
    rep = HealthReport(now=iso(now))
    ledger = Path(os.path.abspath(cfg.ledger))
    cfg.archive_root    # noqa: B018 - a URL store without an archive folder: ConfigError
    store = open_store(cfg)
    try:
        sz = sizes(cfg, store)
        interrupted = _interrupted(cfg, store)
    finally:
        close_store(store)
    facts = _ledger_facts(ledger, now, h.ratio_window_days)
    last_maint = facts.pop("last_maintenance")
    growth = None
    if last_maint and isinstance(last_maint.get("sizes_after"), dict):
        days = age_days(now, parse_iso(last_maint["ts"]))
        prev = last_maint["sizes_after"]
        if days > 0:
            growth = {k: round((sz[k] - prev.get(k, 0)) / days) for k in
                      ("ledger_bytes", "store_bytes", "archive_bytes")}
    rep.metrics = {**sz, "ledger_path": str(ledger), "store_path": cfg.store_name,
                   "archive_path": str(cfg.archive_root), **facts,
                   "ratio_window_days": h.ratio_window_days,
                   "growth_bytes_per_day": growth,
                   "last_maintenance": last_maint["ts"] if last_maint else None,
                   "last_maintenance_status": last_maint.get("status") if last_maint else None}

    # checks
    torn, invalid = facts.pop("bad_lines")
    bad = torn + invalid
    rep.checks.append({"name": "ledger_integrity", "ok": bad == 0,
                       "detail": f"{facts['records']} records" + (f", {torn} torn and "
                                                                f"{invalid} invalid lines "
                                                          "(fix: compactor maintain --run "
                                                          "--only verify)" if bad else "")})
    problems = []
    for p in entry_files(cfg.archive_root):
        try:
            e = read_entry(p)
            pp = e.payload_path
            if not pp.exists() or pp.stat().st_size != e.data["lossless"]["stored_bytes"]:
                problems.append(f"{pp}: missing or of the wrong size")
            elif deep:
                e.payload(check=True)
        except (ArchiveError, KeyError, TypeError) as err:
            problems.append(str(err))
    rep.checks.append({"name": "archive_integrity", "ok": not problems,
                       "detail": "; ".join(problems[:5]) or f"{sz['archive_entries']} entries"})
    failed = last_maint is not None and last_maint.get("status") == "failed"
    skipped = (last_maint or {}).get("skipped") or []
    detail = "ok"
    if failed:
        detail = f"run {last_maint.get('run_id')} failed: {last_maint.get('error')}"
    elif skipped:
        detail = (f"run {last_maint.get('run_id')} skipped {len(skipped)} session(s) with a "
                  "damaged archive: " + "; ".join(f"{s.get('session_id')}: {s.get('reason')}"
                                                  for s in skipped[:5]))
    rep.checks.append({"name": "last_maintenance", "ok": not (failed or skipped),
                       "detail": detail})
    rep.checks.append(interrupted)
    for c in rep.checks:
        if not c["ok"]:
            rep.alert("failed_check", h.failed_check_level, f"{c['name']}: {c['detail']}")

    # alerts on metrics
    last = facts["last_compaction"]
    if last is None:
        rep.alert("no_compaction", h.no_compaction_level, "no compaction recorded in the ledger")
    else:
        idle = (now - parse_iso(last)).total_seconds() / DAY_S
        if idle >= h.no_compaction_days:
            rep.alert("no_compaction", h.no_compaction_level,
                      f"last compaction {idle:.1f} days ago (threshold "
                      f"{h.no_compaction_days:g} days)")
    if sz["ledger_bytes"] > h.ledger_max_mb * 1e6:
        rep.alert("ledger_size", h.ledger_size_level,
                  f"ledger takes {sz['ledger_bytes']:,} bytes (threshold {h.ledger_max_mb:g} MB)")
    ratio = facts["ratio"]
    if ratio is not None and ratio < h.min_compaction_ratio:
        rep.alert("compaction_ratio", h.compaction_ratio_level,
                  f"compaction ratio {ratio:.1%} over the last {h.ratio_window_days:g} days "
                  f"(threshold {h.min_compaction_ratio:.0%})")
    return rep


def _interrupted(cfg: MaintenanceConfig, store: Any) -> dict[str, Any]:
    """A journal left by a killed run while no run holds the lock; or, with no journal
    here, sessions the store holds taken out while no run holds its run lock (a run
    killed on another host, whose journal is there)."""
    state = cfg.state_dir
    journal = state / "journal.jsonl"
    if not journal.exists():
        held = store.taken_out() if store is not None else []
        if held:
            try:
                with store.run_lock(0):
                    pass
            except TimeoutError:
                return {"name": "interrupted_maintenance", "ok": True,
                        "detail": "a run is in progress"}
            return {"name": "interrupted_maintenance", "ok": False,
                    "detail": f"{len(held)} session(s) taken out by a run killed elsewhere "
                              f"({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); "
                              "fix: run `compactor maintain --run` on the host whose archive "
                              "folder holds its journal"}
        return {"name": "interrupted_maintenance", "ok": True, "detail": "no journal"}
    lock = FileLock(str(state / "maintain.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return {"name": "interrupted_maintenance", "ok": True, "detail": "a run is in progress"}
    lock.release()
    return {"name": "interrupted_maintenance", "ok": False,
            "detail": f"{journal} left by a killed run (fix: compactor maintain --run "
                      "completes it)"}
