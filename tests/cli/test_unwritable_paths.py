"""Commands pointed at a path they cannot use -- a file where a folder is expected (the
way to make a path unwritable when the tests run as root, who ignores permissions), a
folder where a file is expected, or a folder that does not exist -- exit 2 with one line
naming the path and the fix, and create nothing where a typo pointed."""

from __future__ import annotations

import pytest

from cli_support import assert_one_line_error, compactor, good_conversation, write_jsonl


@pytest.fixture
def site(tmp_path):
    """``plain`` (a regular file), ``folder`` (an empty folder), ``c.jsonl`` (two good
    conversations)."""
    (tmp_path / "plain").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    write_jsonl(tmp_path / "c.jsonl", [good_conversation("a"), good_conversation("b")])
    return tmp_path


REPLAY = ["replay", "c.jsonl", "--window", "4000", "--counter", "heuristic"]


@pytest.mark.parametrize("args, names", [
    ([*REPLAY, "--store", "plain"], ["--store plain", "fix:"]),
    ([*REPLAY, "--store", "plain/store"], ["--store plain/store", "fix:"]),
    ([*REPLAY, "--ledger", "plain/ledger.jsonl"], ["--ledger plain/ledger.jsonl", "fix:"]),
    ([*REPLAY, "--ledger", "folder"], ["--ledger folder", "fix:"]),
], ids=["store-is-a-file", "store-under-a-file", "ledger-under-a-file", "ledger-is-a-folder"])
def test_replay_paths(site, args, names):
    """replay --store/--ledger that cannot be written: one line naming the option."""
    assert_one_line_error(compactor(*args, cwd=site), *names)


@pytest.mark.parametrize("argv", [
    ["sessions", "--store", "missing", "list"],
    ["sessions", "--store", "missing", "show", "s1"],
    ["sessions", "--store", "missing", "restore", "s1"],
    ["maintain", "--run", "--store", "missing"],
    ["maintain", "--assess", "--store", "missing"],
    ["maintain", "--dry-run", "--store", "missing"],
    ["archive", "list", "--store", "missing"],
    ["archive", "show", "s1", "--store", "missing"],
    ["archive", "restore", "s1", "--store", "missing"],
    ["archive", "add", "s1", "--store", "missing"],
    ["archive", "mark", "s1", "--store", "missing"],
], ids=lambda a: " ".join(a[:2]))
def test_missing_store_is_named_and_not_created(site, argv):
    """A store folder that does not exist: one line 'no session store at missing', exit 2,
    and no folder was created there."""
    assert_one_line_error(compactor(*argv, cwd=site), "no session store at missing", "fix:")
    assert not (site / "missing").exists()


@pytest.mark.parametrize("argv", [
    ["sessions", "--store", "plain", "list"],
    ["maintain", "--run", "--store", "plain"],
    ["archive", "add", "s1", "--store", "plain"],
], ids=lambda a: " ".join(a[:2]))
def test_store_that_is_a_file(site, argv):
    """A store path that is a regular file: one line saying so, exit 2, file untouched."""
    assert_one_line_error(compactor(*argv, cwd=site), "plain", "is a file", "fix:")
    assert (site / "plain").read_text() == "not a folder"


@pytest.mark.parametrize("command", ["verify", "tail", "stats"])
def test_ledger_commands_on_a_folder(site, command):
    """ledger verify|tail|stats --ledger FOLDER: one line 'is a folder, not a ledger file'."""
    run = compactor("ledger", "--ledger", "folder", command, cwd=site)
    assert_one_line_error(run, str(site / "folder"), "is a folder", "fix:")


@pytest.mark.parametrize("command", ["verify", "tail", "stats"])
def test_ledger_commands_under_a_file(site, command):
    """ledger ... --ledger plain/ledger.jsonl (its folder is a file): one line, exit 2."""
    run = compactor("ledger", "--ledger", "plain/ledger.jsonl", command, cwd=site)
    assert_one_line_error(run, "plain", "fix:")


def test_ledger_follow_on_a_folder(site):
    """ledger tail --follow on a folder stops at once with one line (it does not wait)."""
    run = compactor("ledger", "--ledger", "folder", "tail", "--follow", cwd=site)
    assert_one_line_error(run, "is a folder")


@pytest.mark.parametrize("out", ["plain/history.json", "folder"])
def test_restore_out_that_cannot_be_written(site, out):
    """sessions restore --out into a path that cannot be a file: one line naming --out."""
    run = compactor(*REPLAY, "--store", "store", cwd=site)
    assert run.code == 0, run.err
    run = compactor("sessions", "--store", "store", "restore", "a", "--out", out, cwd=site)
    assert_one_line_error(run, f"--out {out}", "fix:")
