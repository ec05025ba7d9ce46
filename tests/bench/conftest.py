"""Small synthetic inputs for the bench tests (no ../shared/data needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def tau_like(n_turns: int, tag: str) -> list[dict[str, Any]]:
    """An Anthropic tool-using conversation (system first, as in the shared JSONL):
    each turn asks about a reservation, calls a tool, gets a long result, answers."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are an airline agent. "
                                   "Follow the policy. " * 20}]
    for t in range(n_turns):
        rid = f"R{tag}{t:03d}X"
        msgs.append({"role": "user", "content": f"Please check reservation {rid} for flight "
                     f"HAT{100 + t} on 2024-05-{10 + t % 18:02d}, paid $1,{200 + t}.00."})
        cid = f"toolu_{tag}_{t}"
        msgs.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Looking up {rid}."},
            {"type": "tool_use", "id": cid, "name": "get_reservation_details",
             "input": {"reservation_id": rid}}]})
        msgs.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": cid,
             "content": json.dumps({"reservation_id": rid, "flights": [f"HAT{100 + t}"],
                                    "notes": "economy seat " * 40})}]})
        msgs.append({"role": "assistant", "content": f"Reservation {rid} is confirmed on "
                     f"HAT{100 + t}."})
    return msgs


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one small Anthropic JSONL file of three tool-using conversations."""
    d = tmp_path_factory.mktemp("data")
    lines = [json.dumps({"id": f"c{k}", "messages": tau_like(12 + 4 * k, str(k))})
             for k in range(3)]
    (d / "tiny.anthropic.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d
