"""Numeric options are checked before any work: a bad value is exit 2 with one line naming
the option (argparse's usage block is not printed), and --limit N replays exactly the first
N conversations of the file."""

from __future__ import annotations

import json

import pytest

from cli_support import assert_one_line_error, compactor, good_conversation, write_jsonl

BAD = [
    (["--limit", "-1"], "--limit"),
    (["--limit", "0"], "--limit"),
    (["--limit", "two"], "--limit"),
    (["--keep-recent", "-1"], "--keep-recent"),
    (["--max-summary-tokens", "-5"], "--max-summary-tokens"),
    (["--window", "0"], "--window"),
    (["--window", "-4000"], "--window"),
    (["--window", "8x"], "--window"),
    (["--window", "150%"], "--window"),
    (["--high", "high"], "--high"),
    (["--counter", "bpe"], "--counter"),
]


@pytest.mark.parametrize("args, option", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_option_value_is_one_line(tmp_path, args, option):
    """A bad value: exit 2, one line naming the option, nothing replayed."""
    path = write_jsonl(tmp_path / "c.jsonl", [good_conversation("a"), good_conversation("b")])
    window = [] if option == "--window" else ["--window", "4000"]
    run = compactor("replay", path, *window, *args, "--json", cwd=tmp_path)
    assert_one_line_error(run, option, "fix:")
    assert run.out == ""


@pytest.mark.parametrize("argv, option", [
    (["ledger", "tail", "-n", "-1"], "--lines"),
    (["bench", "--limit", "0"], "--limit"),
    (["bench", "--scaling-window", "-2"], "--scaling-window"),
    (["sessions"], "sessions_command"),
    (["ledger"], "choose a command"),
    (["budgets"], "choose a command"),
    (["nonsense"], "invalid choice"),
])
def test_other_usage_errors_are_one_line(tmp_path, argv, option):
    """Usage errors of the other commands: exit 2, one line, no usage block."""
    run = compactor(*argv, cwd=tmp_path)
    assert_one_line_error(run, option)


@pytest.mark.parametrize("limit", [1, 2])
def test_limit_replays_exactly_the_first_n(tmp_path, limit):
    """--limit N replays the first N conversations (the old code dropped one for -1)."""
    path = write_jsonl(tmp_path / "c.jsonl", [good_conversation(f"c{i}") for i in range(3)])
    run = compactor("replay", path, "--window", "4000", "--counter", "heuristic",
                    "--limit", str(limit), "--json", cwd=tmp_path)
    assert run.code == 0, run.err
    assert json.loads(run.out)["conversations"] == limit


def test_limit_counts_bad_conversations_by_their_place_in_the_file(tmp_path):
    """--limit 2 on good, bad, good: the bad second one is named, the third not replayed."""
    path = write_jsonl(tmp_path / "c.jsonl", [good_conversation("c0"),
                                              {"id": "bad", "messages": None},
                                              good_conversation("c2")])
    run = compactor("replay", path, "--window", "4000", "--counter", "heuristic",
                    "--limit", "2", "--json", cwd=tmp_path)
    assert_one_line_error(run, "conversation 2 (id bad)")
    assert json.loads(run.out)["conversations"] == 1
