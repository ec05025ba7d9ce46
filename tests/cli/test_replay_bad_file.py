"""`compactor replay FILE` on a file that cannot be read as conversations at all: exit 2,
one stderr line naming the file and the fix, nothing on stdout, no traceback."""

from __future__ import annotations

import json

import pytest

from cli_support import assert_one_line_error, compactor


def _files(tmp_path):
    """name -> (path, what the one line must say)."""
    d = tmp_path
    (d / "empty.jsonl").write_bytes(b"")
    (d / "blank.jsonl").write_bytes(b"\n  \n")
    (d / "scalar.json").write_text("42")
    (d / "null.json").write_text("null")
    (d / "string.json").write_text('"hello"')
    (d / "empty_list.json").write_text("[]")
    (d / "numbers.json").write_text("[1, 2, 3]")
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "latin1.json").write_bytes('[{"role": "user", "content": "café"}]'.encode("latin-1"))
    (d / "broken.json").write_text('[{"role": "user", "content": ')
    (d / "object.json").write_text('{"conversation": []}')
    (d / "tools.json").write_text(json.dumps([{"name": "f", "input_schema": {}}]))
    (d / "folder.jsonl").mkdir()
    return {
        "empty": ("empty.jsonl", "the file is empty"),
        "blank": ("blank.jsonl", "the file is empty"),
        "scalar": ("scalar.json", "the number 42"),
        "null": ("null.json", "holds null"),
        "string": ("string.json", "the string"),
        "empty_list": ("empty_list.json", "no conversations"),
        "numbers": ("numbers.json", "a JSON list of the number 1"),
        "deep": ("deep.json", "nested too deeply"),
        "latin1": ("latin1.json", "not UTF-8"),
        "broken": ("broken.json", "not JSON or JSONL"),
        "object": ("object.json", "without 'messages'"),
        "tools": ("tools.json", "--tools"),
        "missing": ("missing.jsonl", "no such file"),
        "folder": ("folder.jsonl", "is a folder"),
    }


CASES = ["empty", "blank", "scalar", "null", "string", "empty_list", "numbers", "deep",
         "latin1", "broken", "object", "tools", "missing", "folder"]


@pytest.mark.parametrize("case", CASES)
def test_unreadable_file_is_one_line(tmp_path, case):
    """Each file-level problem: exit 2, one line naming the file, what was found and a fix."""
    name, says = _files(tmp_path)[case]
    run = compactor("replay", tmp_path / name, "--window", "4000", cwd=tmp_path)
    assert_one_line_error(run, name, says, "fix:")
    assert run.out == ""


def test_a_file_that_may_not_be_read(tmp_path):
    """A path through a regular file (ENOTDIR): one line, exit 2."""
    (tmp_path / "plain").write_text("x")
    run = compactor("replay", tmp_path / "plain" / "c.jsonl", "--window", "4000", cwd=tmp_path)
    assert_one_line_error(run, "c.jsonl", "fix:")
