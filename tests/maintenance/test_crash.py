"""Fault injection with real processes: a SIGKILL at named steps or at random moments, and
a disk-full error, in the middle of `maintain --run`, leave every session restorable; the
next run recovers and completes the job."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from checks import assert_all_restorable, expected_tier, leftovers
from maintenance_support import cli, cli_json, run_proc, subprocess_env
from procio import LineReader
from compactor.ledger import read_records
from compactor.maintenance import entries


def _complete(fleet) -> dict:
    """The next run, without faults: it must recover and finish everything."""
    code, rep = cli_json(fleet.args("maintain", "--run"))
    assert code == 0 and rep["status"] == "ok", rep
    arch = entries(fleet.store / "archive")
    for sid, info in fleet.manifest.items():
        tier = arch[sid].tier if sid in arch else "full"
        important = arch[sid].important if sid in arch else info["marked"]
        assert tier == expected_tier(info["age_days"], important), sid
    assert_all_restorable(fleet.store, fleet.manifest)
    assert leftovers(fleet.store) == []
    return rep


@pytest.mark.parametrize("fault", [
    "intent:kill:1",      # before the first file of the first step is written
    "write:kill:4",       # halfway through writing an archive file
    "action:kill:7",      # after a payload/entry was renamed into place
    "intent:kill:12",     # about to move a live session folder to trash
    "commit:kill:5",      # a step committed, its trash not yet deleted
    "ledger:kill:2",      # between the ledger repair and the rotation
])
def test_sigkill_at_a_named_step_then_next_run_completes(small_fleet, fault):
    """SIGKILL at each kind of point: sessions stay restorable, health flags the
    interrupted run, and the next run rolls back or forward and completes."""
    p = run_proc(small_fleet.args("maintain", "--run"), fault=fault)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr)
    assert_all_restorable(small_fleet.store, small_fleet.manifest)
    if fault != "ledger:kill:2":
        assert (small_fleet.store / ".maintenance" / "journal.jsonl").exists()
        code, h = cli_json(small_fleet.args("health"))
        assert code == 2 and any(a["name"] == "failed_check" and "interrupted" in a["message"]
                                 for a in h["alerts"])
    rep = _complete(small_fleet)
    if fault != "ledger:kill:2":
        assert rep["recovered"]["run_id"]


def test_sigkill_at_random_moments(small_fleet):
    """Three runs killed at random moments (seeded), one after the other: after each
    every session restores; a fourth run completes."""
    rng = random.Random(7)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "compactor.cli",
                                 *small_fleet.args("maintain", "--run")],
                                env=subprocess_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_all_restorable(small_fleet.store, small_fleet.manifest)
    _complete(small_fleet)


def test_disk_full_rolls_back_records_failure_and_next_run_completes(small_fleet):
    """ENOSPC halfway through a file: the run exits 1, rolls the step back (no temp file,
    no journal), records the failure in the ledger, and the next run completes."""
    p = run_proc(small_fleet.args("maintain", "--run"), fault="write:enospc:6")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "failed" in p.stdout and "No space left on device" in p.stdout
    assert_all_restorable(small_fleet.store, small_fleet.manifest)
    assert leftovers(small_fleet.store) == []
    rec = [r for r in read_records(small_fleet.ledger) if r["event"] == "maintenance"][-1]
    assert rec["status"] == "failed" and rec["rolled_back"] and "ENOSPC" not in rec["error"]
    assert rec["failed_step"].startswith("archive ")
    code, h = cli_json(small_fleet.args("health"))
    assert code == 2 and any("last_maintenance" in a["message"] for a in h["alerts"])
    _complete(small_fleet)
    assert cli(small_fleet.args("health"))[0] == 0


def test_lock_keeps_a_second_run_out(small_fleet):
    """While a run is paused mid-step (holding the filelock), a second run exits 1 without
    touching anything and health does not call it interrupted; after a SIGKILL of the
    paused run the next run completes."""
    proc = subprocess.Popen([sys.executable, "-m", "compactor.cli",
                             *small_fleet.args("maintain", "--run")],
                            env=subprocess_env("intent:pause:3"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert LineReader(proc.stderr).readline(timeout=60).startswith("PAUSED intent")
        code, out, err = cli(small_fleet.args("maintain", "--run"))
        assert code == 1 and "another maintenance run holds" in err
        code, h = cli_json(small_fleet.args("health"))
        assert {c["name"]: c["ok"] for c in h["checks"]}["interrupted_maintenance"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _complete(small_fleet)["recovered"]["rolled_back"]
