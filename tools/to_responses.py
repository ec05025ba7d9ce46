"""Convert recorded conversations to OpenAI Responses API input items (JSONL).

    python tools/to_responses.py IN OUT.jsonl [--reasoning]

IN is one of the shapes ``compactor replay`` reads: our JSONL line schema
(``{id, messages, probes?}`` a line, Anthropic or OpenAI chat messages) or a JSON list of
tau-bench runs (``[{task_id, trial, traj}]``, OpenAI chat). OUT gets one
``{id, source, messages, probes?}`` line per conversation, ``messages`` being Responses
items:

* system / user text -> an easy-input message (``{"role", "content": "..."}``); content
  with blocks -> a ``{"type": "message"}`` item with ``input_text`` parts;
* assistant text -> a ``message`` item with ``output_text``;
* Anthropic ``tool_use`` / OpenAI ``tool_calls`` -> ``function_call`` items
  (``call_id``, ``name``, ``arguments`` as a JSON string, ``id`` ``fc_<n>``);
* ``tool_result`` blocks / ``tool`` messages -> ``function_call_output`` items;
* ``thinking`` -> a ``reasoning`` item whose summary is the thinking text;
  ``redacted_thinking`` -> a ``reasoning`` item carrying its data as ``encrypted_content``.

A call id used twice in one conversation (the tau-bench OpenAI runs reuse 73) becomes
``<id>_dupN`` on the call and on the output that answers it, as the shared Anthropic
conversion did. ``--reasoning`` puts a synthetic ``reasoning`` item before every
assistant turn that has none (an opaque ``encrypted_content`` derived from the
conversation id and position, a summary marked ``[synthetic]``), so a replay exercises
reasoning items kept with their turns; the source transcripts have no reasoning.

Exit status 2 with one line on stderr when IN cannot be read or converted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any


class ConvertError(Exception):
    """IN cannot be converted; the message names the place and the fix."""


def _text_item(role: str, content: Any) -> dict[str, Any] | None:
    """A message item for ``role`` from chat ``content`` (string or text blocks)."""
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        if not content:
            return None
        if role == "assistant":
            return {"type": "message", "role": role,
                    "content": [{"type": kind, "text": content}]}
        return {"role": role, "content": content}
    parts = [{"type": kind, "text": str(b.get("text", ""))} for b in content or []
             if isinstance(b, dict) and b.get("type") == "text" and b.get("text")]
    return {"type": "message", "role": role, "content": parts} if parts else None


class _Converter:
    """One conversation's conversion state: call-id renames and item counters."""

    def __init__(self, cid: str, reasoning: bool) -> None:
        self.cid = cid
        self.reasoning = reasoning
        self.seen: dict[str, int] = {}
        self.current: dict[str, str] = {}   # source id -> the id its latest call got
        self.n = 0
        self.items: list[dict[str, Any]] = []

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n:04d}"

    def call(self, src_id: str, name: str, arguments: str) -> None:
        k = self.seen.get(src_id, 0)
        self.seen[src_id] = k + 1
        new = src_id if k == 0 else f"{src_id}_dup{k}"
        self.current[src_id] = new
        self.items.append({"type": "function_call", "call_id": new, "name": name,
                           "arguments": arguments, "id": self._id("fc")})

    def output(self, src_id: str, text: str) -> None:
        self.items.append({"type": "function_call_output",
                           "call_id": self.current.get(src_id, src_id), "output": text})

    def synthetic_reasoning(self, what: str) -> None:
        if not self.reasoning:
            return
        seed = hashlib.sha256(f"{self.cid}#{self.n}".encode()).digest() * 8
        self.items.append({"type": "reasoning", "id": self._id("rs"),
                           "summary": [{"type": "summary_text",
                                        "text": f"[synthetic] next: {what}"}],
                           "encrypted_content": base64.b64encode(seed).decode("ascii")})

    def assistant_anthropic(self, content: Any) -> None:
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        blocks = [b for b in blocks or [] if isinstance(b, dict)]
        if blocks and not any(b.get("type") in ("thinking", "redacted_thinking") for b in blocks):
            first = blocks[0]
            self.synthetic_reasoning(first.get("name") if first.get("type") == "tool_use"
                                     else "reply")
        texts: list[dict[str, Any]] = []

        def flush() -> None:
            if texts:
                self.items.append({"type": "message", "role": "assistant",
                                   "content": list(texts)})
                texts.clear()

        for k, b in enumerate(blocks):
            t = b.get("type")
            if t == "text" and b.get("text"):
                texts.append({"type": "output_text", "text": str(b["text"])})
            elif t == "tool_use":
                flush()
                self.call(str(b.get("id")), str(b.get("name")),
                          json.dumps(b.get("input", {}), ensure_ascii=False))
            elif t in ("thinking", "redacted_thinking"):
                flush()
                if not any(x.get("type") in ("text", "tool_use") for x in blocks[k + 1:]):
                    continue        # a reasoning item needs the item it belongs to
                item: dict[str, Any] = {"type": "reasoning", "id": self._id("rs"), "summary": []}
                if t == "thinking":
                    item["summary"] = [{"type": "summary_text", "text": str(b.get("thinking", ""))}]
                else:
                    item["encrypted_content"] = str(b.get("data", ""))
                self.items.append(item)
        flush()

    def user_anthropic(self, content: Any) -> None:
        if isinstance(content, str):
            item = _text_item("user", content)
            if item:
                self.items.append(item)
            return
        rest = []
        for b in content or []:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                c = b.get("content")
                text = c if isinstance(c, str) else "\n".join(
                    str(x.get("text", "")) for x in c or [] if isinstance(x, dict))
                self.output(str(b.get("tool_use_id")), text)
            else:
                rest.append(b)
        item = _text_item("user", rest)
        if item:
            self.items.append(item)

    def openai(self, m: dict[str, Any]) -> None:
        role = m.get("role")
        if role == "tool":
            c = m.get("content")
            self.output(str(m.get("tool_call_id")), c if isinstance(c, str) else json.dumps(c))
            return
        if role == "assistant":
            calls = [c for c in m.get("tool_calls") or [] if isinstance(c, dict)]
            fn0 = (calls[0].get("function") or {}) if calls else {}
            self.synthetic_reasoning(str(fn0.get("name")) if calls else "reply")
            item = _text_item("assistant", m.get("content"))
            if item:
                self.items.append(item)
            for c in calls:
                fn = c.get("function") or {}
                args = fn.get("arguments", "")
                self.call(str(c.get("id")), str(fn.get("name")),
                          args if isinstance(args, str) else json.dumps(args))
            return
        item = _text_item(str(role), m.get("content"))
        if item:
            self.items.append(item)


def convert_messages(cid: str, messages: list[dict[str, Any]], *,
                     reasoning: bool = False) -> list[dict[str, Any]]:
    """Responses items for one conversation's chat ``messages`` (Anthropic or OpenAI)."""
    openai = any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)
    conv = _Converter(cid, reasoning)
    for m in messages:
        role = m.get("role")
        if openai:
            conv.openai(m)
        elif role == "assistant":
            conv.assistant_anthropic(m.get("content"))
        elif role == "user":
            conv.user_anthropic(m.get("content"))
        else:
            item = _text_item(str(role), m.get("content"))
            if item:
                conv.items.append(item)
    return conv.items


def read_input(path: Path) -> list[dict[str, Any]]:
    """``[{id, source, messages, probes?}]`` from IN (see the module docstring).

    Raises:
        ConvertError: missing file, not JSON/JSONL, or not a known shape.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConvertError(f"{path}: cannot be read ({e.strerror or e}); fix: pass an existing "
                           "conversation file") from None
    except UnicodeDecodeError:
        raise ConvertError(f"{path}: not UTF-8 text; fix: save it as UTF-8") from None
    try:
        data = json.loads(text)
        rows = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ConvertError(f"{path}: line {n} is not JSON ({e.msg}); fix: one JSON "
                                       "object a line") from None
    out = []
    for n, row in enumerate(rows, 1):
        if isinstance(row, dict) and isinstance(row.get("traj"), list):
            cid = f"{path.stem}/task{row.get('task_id', n - 1)}-trial{row.get('trial', 0)}"
            out.append({"id": cid, "source": path.name, "messages": row["traj"]})
        elif isinstance(row, dict) and isinstance(row.get("messages"), list):
            conv = {"id": str(row.get("id", f"{path.stem}#{n}")),
                    "source": row.get("source", path.name), "messages": row["messages"]}
            if row.get("probes"):
                conv["probes"] = row["probes"]
            out.append(conv)
        else:
            raise ConvertError(f"{path}: conversation {n} has neither 'messages' nor 'traj'; "
                               "fix: pass our JSONL line schema or a list of tau-bench runs")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="to_responses", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", type=Path, help="conversations (JSONL or tau-bench JSON runs)")
    ap.add_argument("output", type=Path, help="where to write the Responses-items JSONL")
    ap.add_argument("--reasoning", action="store_true",
                    help="add a synthetic reasoning item before each assistant turn")
    args = ap.parse_args(argv)
    try:
        convs = read_input(args.input)
        with args.output.open("w", encoding="utf-8") as f:
            for c in convs:
                row = {**c, "messages": convert_messages(c["id"], c["messages"],
                                                         reasoning=args.reasoning)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    except ConvertError as e:
        print(f"to_responses: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"to_responses: error: {args.output}: cannot be written ({e.strerror or e}); "
              "fix: pass a writable path", file=sys.stderr)
        return 2
    print(f"{len(convs)} conversations -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
