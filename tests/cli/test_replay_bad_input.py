"""`compactor replay FILE`: each bad conversation is named on stderr in one line (file,
conversation number, id, where, rule, fix), the good ones are still replayed and reported,
and the exit is 2."""

from __future__ import annotations

import json

import pytest

from cli_support import assert_one_line_error, compactor, good_conversation, write_jsonl

USER = {"role": "user", "content": "look up reservation ABC123"}
ASSISTANT = {"role": "assistant", "content": "reservation ABC123 is confirmed"}
TOOL_USE = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "get_reservation", "input": {"id": "ABC123"}}]}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "confirmed"}

#: name -> (the bad line as written to the file, expected "where", expected rule)
BAD_LINES = {
    "lone_surrogate": ('{"id": "bad", "messages": [{"role": "user", "content": "a\\ud800b"}, '
                       '{"role": "assistant", "content": "ok"}]}', "messages[0]", "encoding"),
    "invalid_utf8": (b'{"id": "bad", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
                     "line 2", "encoding"),
    "null_first_message": ({"id": "bad", "messages": [None, ASSISTANT]}, "messages[0]", "shape"),
    "message_not_an_object": ({"id": "bad", "messages": [USER, 7]}, "messages[1]", "shape"),
    "messages_not_a_list": ({"id": "bad", "messages": "hello"}, "messages", "shape"),
    "probes_not_a_list": ({"id": "bad", "messages": [USER, ASSISTANT], "probes": "what?"},
                          "probes", "shape"),
    "deeply_nested": ('{"id": "bad", "messages": ' + "[" * 50_000 + "]" * 50_000 + "}",
                      "line 2", "nesting"),
    "nested_content": ({"id": "bad", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "x",
                                      "extra": json.loads("[" * 300 + "]" * 300)}]},
        ASSISTANT]}, "messages[0]", "nesting"),
    "json_scalar_line": ("42", "line 2", "shape"),
    "not_json": ('{"id": "bad", "messages": [', "line 2", "json"),
    "roles_human_bot": ({"id": "bad", "messages": [{"role": "human", "content": "hi"},
                                                   {"role": "bot", "content": "hello"}]},
                        "messages[0]", "role"),
    "orphan_tool_result": ({"id": "bad", "messages": [
        USER, ASSISTANT, {"role": "user", "content": [RESULT]}, ASSISTANT]},
        "messages[2]", "orphan_result"),
    "duplicate_tool_result": ({"id": "bad", "messages": [
        USER, TOOL_USE, {"role": "user", "content": [RESULT, dict(RESULT)]}, ASSISTANT]},
        "messages[2]", "duplicate_result"),
    "missing_content": ({"id": "bad", "messages": [{"role": "user"}, ASSISTANT]},
                        "messages[0]", "empty_content"),
    "nan_in_tool_input": ('{"id": "bad", "messages": [{"role": "user", "content": "x"}, '
                          '{"role": "assistant", "content": [{"type": "tool_use", "id": "t", '
                          '"name": "f", "input": {"a": NaN}}]}]}', "messages[1]", "json"),
    "huge_integer": ('{"id": "bad", "messages": [{"role": "user", "content": "x", "n": '
                     + "9" * 5000 + "}]}", "line 2", "json"),
    "content_a_number": ({"id": "bad", "messages": [{"role": "user", "content": 5}, ASSISTANT]},
                         "messages[0]", "content_type"),
}


def _replay_json(tmp_path, path, *extra):
    run = compactor("replay", path, "--window", "4000", "--counter", "heuristic", "--json",
                    *extra, cwd=tmp_path)
    assert run.out.strip(), run.err
    return run, json.loads(run.out)


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_one_bad_conversation_among_good_ones(tmp_path, name):
    """A file of good, bad, good conversations: exit 2, one stderr line naming the bad one
    (its number, id when readable, where and rule), and both good ones replayed."""
    bad, where, rule = BAD_LINES[name]
    path = write_jsonl(tmp_path / "mixed.jsonl",
                       [good_conversation("good-a"), bad, good_conversation("good-b")])
    run, report = _replay_json(tmp_path, path)
    line = assert_one_line_error(run, f"{path}: conversation 2", f": {where}", f": {rule}: ",
                                 "; fix: ")
    if where != "line 2":   # the id could be read
        assert "(id bad)" in line
    assert report["conversations"] == 2
    assert report["model_calls"] == 2 * 3   # 3 assistant turns in each good conversation
    assert [p["index"] for p in report["input_problems"]] == [2]


def test_every_bad_conversation_gets_its_own_line(tmp_path):
    """One file holding every kind of bad conversation between good ones: one stderr line
    per bad conversation, in file order, and every good one reported."""
    items, good = [], 0
    for k, (bad, _, _) in enumerate(BAD_LINES.values()):
        items.append(good_conversation(f"good-{k}"))
        good += 1
        items.append(bad)
    path = write_jsonl(tmp_path / "all.jsonl", items)
    run, report = _replay_json(tmp_path, path)
    assert run.code == 2 and "Traceback" not in run.err
    lines = run.err_lines
    assert len(lines) == len(BAD_LINES), run.err
    numbers = [int(ln.split(": conversation ")[1].split()[0].rstrip(":")) for ln in lines]
    assert numbers == [2 * k + 2 for k in range(len(BAD_LINES))]
    for ln, (_, _, rule) in zip(lines, BAD_LINES.values()):
        assert f": {rule}: " in ln, (rule, ln)
    assert report["conversations"] == good
    assert len(report["input_problems"]) == len(BAD_LINES)


def test_the_table_output_names_bad_conversations_on_stderr_too(tmp_path):
    """Without --json the table is printed for the good conversations and the bad one is
    named on stderr (not only in --json), exit 2."""
    path = write_jsonl(tmp_path / "h.jsonl", [good_conversation("g"),
                                              BAD_LINES["roles_human_bot"][0]])
    run = compactor("replay", path, "--window", "4000", "--counter", "heuristic", cwd=tmp_path)
    assert_one_line_error(run, "conversation 2 (id bad)", "messages[0]: role:")
    row = next(ln for ln in run.out.splitlines() if "conversations " in ln)
    assert row.split()[-2] == "1"


def test_bad_runs_in_a_json_list_of_runs(tmp_path):
    """A tau-bench style JSON list of runs with a run whose traj is null and an element that
    is not a run: one line each, the good runs replayed."""
    good = {"task_id": 1, "trial": 0, "traj": good_conversation("x")["messages"]}
    data = [good, {"task_id": 2, "trial": 0, "traj": None}, None, dict(good, task_id=3)]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps(data))
    run, report = _replay_json(tmp_path, path)
    assert run.code == 2 and "Traceback" not in run.err
    assert len(run.err_lines) == 2, run.err
    assert "conversation 2 (id runs/task2-trial0): traj: shape:" in run.err_lines[0]
    assert "conversation 3: runs[2]: shape:" in run.err_lines[1]
    assert report["conversations"] == 2


def test_a_valid_file_still_exits_0(tmp_path):
    """The checks do not refuse good input: three good conversations, exit 0, no stderr."""
    path = write_jsonl(tmp_path / "ok.jsonl", [good_conversation(f"g{i}") for i in range(3)])
    run, report = _replay_json(tmp_path, path)
    assert (run.code, run.err_lines, report["conversations"]) == (0, [], 3)
