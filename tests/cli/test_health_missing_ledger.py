"""`compactor health` treats a ledger path with nothing there the way `compactor ledger
tail` does: exit 2 and the same 'no ledger at PATH' line, not a WARNING about a 0-byte
ledger."""

from __future__ import annotations

import json

from cli_support import assert_one_line_error, compactor, good_conversation, write_jsonl


def _store(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [good_conversation("a")])
    run = compactor("replay", "c.jsonl", "--window", "4000", "--counter", "heuristic",
                    "--store", "store", "--ledger", "ledger.jsonl", cwd=tmp_path)
    assert run.code == 0, run.err


def test_typo_in_ledger_path_is_exit_2_like_ledger_tail(tmp_path):
    """health --ledger ./typo.jsonl and ledger tail --ledger ./typo.jsonl print the same
    line, both exit 2."""
    _store(tmp_path)
    health = compactor("health", "--store", "store", "--ledger", "./typo.jsonl", cwd=tmp_path)
    tail = compactor("ledger", "tail", "--ledger", "./typo.jsonl", cwd=tmp_path)
    line = assert_one_line_error(health, f"no ledger at {tmp_path / 'typo.jsonl'}", "fix:")
    assert line == assert_one_line_error(tail)
    assert health.out == ""
    assert not (tmp_path / "typo.jsonl").exists()


def test_json_mode_says_critical_and_why(tmp_path):
    """health --json with no ledger: exit 2, one JSON object (status critical, the error)
    on stdout and the one line on stderr."""
    _store(tmp_path)
    run = compactor("health", "--store", "store", "--ledger", "typo.jsonl", "--json",
                    cwd=tmp_path)
    assert_one_line_error(run, "no ledger at")
    doc = json.loads(run.out)
    assert (doc["status"], doc["exit_code"]) == ("critical", 2)
    assert "no ledger at" in doc["error"]


def test_ledger_path_that_is_a_folder(tmp_path):
    """health --ledger FOLDER: one line 'is a folder, not a ledger file', exit 2."""
    _store(tmp_path)
    (tmp_path / "logs").mkdir()
    run = compactor("health", "--store", "store", "--ledger", "logs", cwd=tmp_path)
    assert_one_line_error(run, "is a folder, not a ledger file", "fix:")


def test_the_real_ledger_is_still_read(tmp_path):
    """With the ledger the replay wrote, health runs its checks (not exit 2): the recorded
    compaction-free replay is a warning at most."""
    _store(tmp_path)
    run = compactor("health", "--store", "store", "--ledger", "ledger.jsonl", cwd=tmp_path)
    assert run.code in (0, 1), run.err
    assert "status:" in run.out and "Traceback" not in run.err
