"""``tools/to_responses.py`` maps each chat part to its Responses item (calls, outputs,
thinking, redacted thinking, text), renames a reused call id on the call and its output,
and refuses a bad input file with exit 2 and one line."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from compactor import Format, validate

TOOL = Path(__file__).resolve().parent.parent / "tools" / "to_responses.py"
_spec = importlib.util.spec_from_file_location("to_responses", TOOL)
to_responses = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(to_responses)


def test_anthropic_parts_become_items():
    """tool_use -> function_call, tool_result -> function_call_output, thinking ->
    reasoning with the text as summary, redacted thinking -> encrypted_content."""
    msgs = [{"role": "system", "content": "policy"},
            {"role": "user", "content": "find W1"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "look it up", "signature": "s"},
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "t1", "name": "get", "input": {"id": "W1"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text", "text": "shipped"}]},
                                         {"type": "text", "text": "and?"}]},
            {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "QUJD"},
                                              {"type": "text", "text": "It shipped."}]}]
    items = to_responses.convert_messages("c", msgs)
    assert [i.get("type", i.get("role")) for i in items] == [
        "system", "user", "reasoning", "message", "function_call", "function_call_output",
        "message", "reasoning", "message"]
    assert items[2]["summary"] == [{"type": "summary_text", "text": "look it up"}]
    assert items[4]["call_id"] == "t1" and json.loads(items[4]["arguments"]) == {"id": "W1"}
    assert items[5] == {"type": "function_call_output", "call_id": "t1", "output": "shipped"}
    assert items[6]["content"] == [{"type": "input_text", "text": "and?"}]
    assert items[7]["encrypted_content"] == "QUJD"
    assert validate(items, Format.RESPONSES) == []


def test_reused_openai_call_ids_are_renamed_on_call_and_output():
    """A call id used twice becomes <id>_dup1 on the second call and on its output."""
    def turn(text):
        return [{"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_x", "type": "function",
                     "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_x", "content": text}]
    msgs = [{"role": "user", "content": "go"}, *turn("one"), *turn("two"),
            {"role": "assistant", "content": "done"}]
    items = to_responses.convert_messages("c", msgs, reasoning=True)
    calls = [i["call_id"] for i in items if i.get("type") == "function_call"]
    outs = [(i["call_id"], i["output"]) for i in items if i.get("type") == "function_call_output"]
    assert calls == ["call_x", "call_x_dup1"]
    assert outs == [("call_x", "one"), ("call_x_dup1", "two")]
    assert sum(1 for i in items if i.get("type") == "reasoning") == 3   # one per assistant turn
    assert validate(items, Format.RESPONSES) == []


def test_bad_input_exits_2_with_one_line(tmp_path):
    """A missing file and a file of the wrong shape each give exit 2 and one stderr line."""
    for arg, needle in [(tmp_path / "nope.jsonl", "cannot be read"),
                        (tmp_path / "bad.json", "neither 'messages' nor 'traj'")]:
        if arg.name == "bad.json":
            arg.write_text('[{"foo": 1}]')
        p = subprocess.run([sys.executable, str(TOOL), str(arg), str(tmp_path / "out.jsonl")],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "fix:" in lines[0]
