"""Fault injection with real processes: a SIGKILL at named steps or at points picked at
random from a run's progress, and a disk-full error, in the middle of `maintain --run`,
leave every session restorable; the next run recovers and completes the job.

Each kill is proven to have landed mid-run: the child exits by SIGKILL (returncode -9) and
the run's own intent journal shows where it stopped (its intent and commit lines match the
progress points the child passed, as traced by ``fault_cli.py``)."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from checks import assert_all_restorable, expected_tier, leftovers
from maintenance_support import cli, cli_json, proc_argv, run_proc, subprocess_env
from procio import LineReader
from compactor.ledger import read_records
from compactor.maintenance import entries
from compactor.maintenance._txn import read_journal


def _journal(fleet) -> list[dict]:
    """The complete lines of the run's intent journal (the run's own progress record)."""
    return read_journal(fleet.store / ".maintenance" / "journal.jsonl")


def _assert_journal_matches(fleet, trace: Path, point: str, nth: int | None = None) -> list[dict]:
    """The journal left by a killed run agrees with the progress points it passed: one
    intent line per ``intent`` point, one commit line per ``commit`` point, and the last
    point passed is ``point`` (its ``nth`` pass, when given). Returns the journal lines."""
    passed = trace.read_text().split()
    assert passed and passed[-1] == point, passed[-5:]
    if nth is not None:
        assert passed.count(point) == nth, (point, passed.count(point), nth)
    lines = _journal(fleet)
    kinds = [r.get("kind") for r in lines]
    assert kinds.count("intent") == passed.count("intent"), (kinds[-5:], passed[-5:])
    assert kinds.count("commit") == passed.count("commit"), (kinds[-5:], passed[-5:])
    return lines


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


def _assert_stopped_at(point: str, lines: list[dict]) -> None:
    """The journal's last line and the files it names show the run stopped at ``point``:
    before an intent's action (``intent``), inside its temp file (``write``), after the
    action (``action``), after a commit line before its cleanup (``commit``), or before
    any step (``ledger``)."""
    if point == "ledger":
        assert [r for r in lines if "step" in r] == [], lines[:3]
        return
    last = lines[-1]
    if point == "commit":
        assert last["kind"] == "commit"
        step = [r for r in lines if r.get("step") == last["step"]]
        assert not any(r["kind"] == "done" for r in step)
        for it in (r for r in step if r["kind"] == "intent"):
            aside = it.get("trash") or it.get("backup")
            assert aside is None or Path(aside).exists(), it  # cleanup not done yet
        return
    assert last["kind"] == "intent", last
    path, op = Path(last["path"]), last["op"]
    if point == "write":
        assert Path(last["tmp"]).is_file(), last  # killed halfway through the temp file
    elif point == "intent":
        if op == "remove":
            assert path.exists() and not Path(last["trash"]).exists(), last
        else:
            assert not Path(last["tmp"]).exists(), last
            assert op == "replace" or not path.exists(), last
    elif point == "action":
        if op == "remove":
            assert not path.exists() and Path(last["trash"]).exists(), last
        else:
            assert path.is_file() and not Path(last["tmp"]).exists(), last


@pytest.mark.parametrize("fault", [
    "intent:kill:1",      # before the first file of the first step is written
    "write:kill:4",       # halfway through writing an archive file
    "action:kill:7",      # after a payload/entry was renamed into place
    "intent:kill:12",     # before an action of a later step
    "commit:kill:5",      # a step committed, its trash not yet deleted
    "ledger:kill:2",      # between the ledger repair and the rotation
])
def test_sigkill_at_a_named_step_then_next_run_completes(small_fleet, fault, tmp_path):
    """SIGKILL at each kind of point lands mid-run (exit by SIGKILL, the journal shows the
    point): sessions stay restorable, health flags the interrupted run, and the next run
    rolls back or forward and completes."""
    trace = tmp_path / "points.txt"
    p = run_proc(small_fleet.args("maintain", "--run"), fault=fault, trace=trace)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr)
    point, _, nth = fault.split(":")
    _assert_stopped_at(point, _assert_journal_matches(small_fleet, trace, point, int(nth)))
    assert_all_restorable(small_fleet.store, small_fleet.manifest)
    if point != "ledger":
        code, h = cli_json(small_fleet.args("health"))
        assert code == 2 and any(a["name"] == "failed_check" and "interrupted" in a["message"]
                                 for a in h["alerts"])
    rep = _complete(small_fleet)
    if point != "ledger":
        assert rep["recovered"]["run_id"]


def _points_of_a_full_run(fleet, dest: Path) -> int:
    """How many progress points a run over a copy of ``fleet`` passes (it must exit 0)."""
    root = dest / "fleet"
    shutil.copytree(fleet.root, root, symlinks=True)
    copy = type(fleet)(root, fleet.manifest)
    trace = dest / "points.txt"
    p = run_proc(copy.args("maintain", "--run"), trace=trace)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return len(trace.read_text().split())


def test_sigkill_at_random_points_of_progress(small_fleet, tmp_path):
    """Three runs, one after the other, each SIGKILLed at a progress point drawn (seeded)
    from what is left of the job: each exits by SIGKILL with its journal showing that
    point, every session restores after each, and a fourth run completes."""
    rng = random.Random(7)
    left = _points_of_a_full_run(small_fleet, tmp_path / "dry")
    assert left > 20, left
    for k in range(3):
        n = rng.randint(1, left // 2)
        trace = tmp_path / f"points{k}.txt"
        proc = subprocess.Popen(proc_argv(small_fleet.args("maintain", "--run"),
                                          f"any:pause:{n}", trace),
                                env=subprocess_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            line = LineReader(proc.stderr).readline(timeout=60)
            assert line.startswith("PAUSED "), f"run {k} ended before point {n}: {line!r}"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        passed = trace.read_text().split()
        assert len(passed) == n and line.split()[1] == passed[-1]
        _assert_stopped_at(passed[-1], _assert_journal_matches(small_fleet, trace, passed[-1]))
        assert_all_restorable(small_fleet.store, small_fleet.manifest)
        left -= n  # a rerun redoes at least what came after the kill
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


def test_lock_keeps_a_second_run_out(small_fleet, tmp_path):
    """While a run is paused mid-step (holding the filelock), a second run exits 1 without
    touching anything and health does not call it interrupted; after a SIGKILL of the
    paused run the next run completes."""
    trace = tmp_path / "points.txt"
    proc = subprocess.Popen(proc_argv(small_fleet.args("maintain", "--run"), "intent:pause:3",
                                      trace),
                            env=subprocess_env(), stdout=subprocess.DEVNULL,
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
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _assert_stopped_at("intent", _assert_journal_matches(small_fleet, trace, "intent", 3))
    assert _complete(small_fleet)["recovered"]["rolled_back"]
