"""`compactor replay FILE --format responses` replays OpenAI Responses items (the format
forced, not detected) exactly as auto-detection does: exit 0, valid histories, the same
compactions."""

from __future__ import annotations

import json

from cli_support import compactor, write_jsonl


def responses_conversation(cid: str, turns: int) -> dict:
    """A Responses ``input`` list: per turn a user message, a function_call and its
    function_call_output, and an assistant output_text message."""
    items: list[dict] = []
    for t in range(turns):
        items.append({"role": "user", "content": f"check order {cid}-{t} and its invoice " * 6})
        items.append({"type": "function_call", "call_id": f"call_{t}", "name": "lookup",
                      "arguments": json.dumps({"order": f"{cid}-{t}"})})
        items.append({"type": "function_call_output", "call_id": f"call_{t}",
                      "output": f"order {cid}-{t}: shipped, invoice paid " * 10})
        items.append({"type": "message", "role": "assistant",
                      "content": [{"type": "output_text",
                                   "text": f"order {cid}-{t} shipped and paid " * 5}]})
    return {"id": cid, "messages": items}


def test_forced_responses_format_replays_like_auto(tmp_path):
    """--format responses is accepted and gives the report --format auto gives for the
    same file (exit 0, no invalid history, at least one compaction each)."""
    path = write_jsonl(tmp_path / "resp.jsonl", [responses_conversation("r1", 12),
                                                  responses_conversation("r2", 9)])
    reports = {}
    for fmt in ("responses", "auto"):
        run = compactor("replay", path, "--format", fmt, "--window", "1500", "--counter",
                        "heuristic", "--json", cwd=tmp_path)
        assert run.code == 0, run.err
        reports[fmt] = json.loads(run.out)
    forced = reports["responses"]
    assert forced["invalid_histories"] == 0 and forced["compactions"] >= 2
    assert forced["conversations_skipped"] == 0
    for r in reports.values():
        del r["seconds"]      # wall time: the one figure two runs may differ in
    assert forced == reports["auto"]
