"""History builders for tests, in both wire formats."""

from __future__ import annotations

import itertools
from typing import Any, Sequence

from compactor._store import ArchiveNode, chain_id, content_hash

_ids = itertools.count()


def tid(prefix: str = "toolu_") -> str:
    return f"{prefix}{next(_ids):06d}"


def a_user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a_text(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def a_calls(*names: str, thinking: bool = False, text: str | None = None) -> tuple[dict, dict]:
    """An Anthropic assistant message with parallel tool_use blocks and the user message
    with all their results."""
    ids = [tid() for _ in names]
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": "Let me think about " + ", ".join(names),
                        "signature": "c2lnbmF0dXJl" + ids[0]})
    if text:
        content.append({"type": "text", "text": text})
    content += [{"type": "tool_use", "id": i, "name": n, "input": {"path": f"src/{n}.py"}}
                for i, n in zip(ids, names)]
    results = [{"type": "tool_result", "tool_use_id": i, "content": f"result of {n}: ok " * 5}
               for i, n in zip(ids, names)]
    return {"role": "assistant", "content": content}, {"role": "user", "content": results}


def o_calls(*names: str) -> list[dict[str, Any]]:
    """An OpenAI assistant message with parallel tool_calls and its tool messages."""
    ids = [tid("call_") for _ in names]
    msgs: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": n, "arguments": '{"q": "x"}'}}
        for i, n in zip(ids, names)]}]
    msgs += [{"role": "tool", "tool_call_id": i, "name": n, "content": f"{n} ok " * 10}
             for i, n in zip(ids, names)]
    return msgs


def anthropic_session(turns: int, *, words: int = 40) -> list[dict[str, Any]]:
    """A valid Anthropic history of ``turns`` user turns, each answered by a tool loop."""
    msgs: list[dict[str, Any]] = []
    for t in range(turns):
        msgs.append(a_user(f"Turn {t}: please fix bug BUG-{1000 + t} in src/mod{t}.py " +
                           "detail " * words))
        call, res = a_calls("read_file", "grep") if t % 2 else a_calls("run_tests")
        msgs += [call, res, a_text(f"Fixed BUG-{1000 + t}. " + "explanation " * words)]
    msgs.append(a_user("What next?"))
    return msgs


def linear_nodes(msgs: Sequence[dict[str, Any]], start: int = 0,
                 prev: str = "") -> list[ArchiveNode]:
    """Archive nodes of ``msgs`` at positions ``start``... chained after ``prev``."""
    out = []
    for i, m in enumerate(msgs, start):
        h = content_hash(m)
        out.append(ArchiveNode(i, h, prev, m))
        prev = chain_id(prev, h)
    return out
