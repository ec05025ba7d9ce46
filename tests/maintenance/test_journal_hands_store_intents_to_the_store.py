"""A session store's own journal intents (`Step.store_op`) are undone by that store when
the step rolls back or when the next run recovers an uncommitted step, finished by it
when the step commits, and reported as a conflict when no store is given; file intents
keep their own undo. Also: a `postgresql://` store without an archive folder is one line,
exit 2, before any connection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compactor.maintenance._txn import Faults, Journal, read_journal, recover
from fleet import NOW, write_ledger
from maintenance_support import cli


class RecordingStore:
    """A store double that records what the journal asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def undo_step_op(self, intent):
        self.calls.append(("undo", intent["key"]))
        return None

    def finish_step_op(self, intent):
        self.calls.append(("finish", intent["key"]))


def _journal(tmp_path: Path, store) -> Journal:
    return Journal(tmp_path / "state" / "journal.jsonl", "run-1",
                   lambda p, n: tmp_path / "trash" / f"{n}" / p.name, Faults(), store)


def test_a_committed_store_intent_is_finished_by_its_store(tmp_path):
    """commit hands the store intent to finish_step_op, after the action ran once."""
    store, acted = RecordingStore(), []
    j = _journal(tmp_path, store)
    step = j.begin("take out s")
    step.store_op("test_take_out", {"session_id": "s", "key": "k1"}, lambda: acted.append(1))
    step.commit()
    j.close(remove=True)
    assert acted == [1] and store.calls == [("finish", "k1")]


def test_a_rolled_back_step_undoes_file_and_store_intents_newest_first(tmp_path):
    """rollback undoes the store intent through the store and removes the file the step
    created, newest first."""
    store = RecordingStore()
    j = _journal(tmp_path, store)
    step = j.begin("archive s")
    f = tmp_path / "archive" / "s.json"
    step.write(f, b"{}")
    step.store_op("test_take_out", {"session_id": "s", "key": "k2"}, lambda: None)
    assert f.exists()
    assert step.rollback() == []
    j.close(remove=True)
    assert store.calls == [("undo", "k2")] and not f.exists()


def test_recovery_undoes_an_uncommitted_store_intent_and_finishes_a_committed_one(tmp_path):
    """A journal left by a killed run: recovery with the store undoes the uncommitted
    step's intent and finishes the committed one's; without a store it reports both
    uncommitted intents as conflicts instead of dropping them silently."""
    for with_store in (True, False):
        store = RecordingStore()
        j = _journal(tmp_path, store)
        done = j.begin("take out a")
        done.store_op("test_take_out", {"session_id": "a", "key": "ka"}, lambda: None)
        j.append({"step": done.id, "kind": "commit"})        # killed before its cleanup
        open_step = j.begin("take out b")
        open_step.store_op("test_take_out", {"session_id": "b", "key": "kb"}, lambda: None)
        j.close(remove=False)                                # killed here
        path = tmp_path / "state" / "journal.jsonl"
        assert [r["kind"] for r in read_journal(path)] == ["begin", "intent", "commit",
                                                           "begin", "intent"]
        rep = recover(path, store if with_store else None)
        assert rep.rolled_back == ["take out b"] and rep.rolled_forward == ["take out a"]
        if with_store:
            assert store.calls == [("finish", "ka"), ("undo", "kb")] and rep.conflicts == []
        else:
            assert store.calls == [] and len(rep.conflicts) == 1 and "'b'" in rep.conflicts[0]
        assert not path.exists()


def test_a_store_cannot_name_its_intent_like_a_file_intent(tmp_path):
    """store_op refuses the file intents' names (their undo is the journal's own)."""
    step = _journal(tmp_path, RecordingStore()).begin("x")
    with pytest.raises(ValueError, match="file intent"):
        step.store_op("remove", {"key": "k"}, lambda: None)


@pytest.mark.parametrize("command", [["maintain", "--run"], ["health"],
                                     ["archive", "list"], ["schedule", "--print", "cron"]])
def test_a_postgres_store_without_an_archive_folder_is_one_line_exit_2(tmp_path, command):
    """A `postgresql://` store and no --archive: exit 2 and one line naming the store
    (its password masked) and the fix, before any connection is tried."""
    url = "postgresql://agent:s3cret@127.0.0.1:1/none"
    write_ledger(tmp_path / "ledger.jsonl", last=NOW, days=1, per_day=1)
    code, out, err = cli([*command, "--store", url, "--ledger",
                          str(tmp_path / "ledger.jsonl")])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, out, err)
    assert "--archive DIR" in lines[0] and "s3cret" not in err and "agent:***@" in lines[0]
    assert json.dumps(out).count("s3cret") == 0
