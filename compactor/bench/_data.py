"""Benchmark inputs: finding the conversation files, loading them in the right wire format,
and chaining conversations into long histories for the scaling runs.

The files are read where they are (``<repo>/../shared/data`` by default); nothing is copied.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._errors import ConfigError
from .._format import Format, leading_system_count
from .._replay import Conversation, load_conversations, parse_window
from .._tokens import TokenCounter, message_tokens, system_tokens, tools_tokens

#: The repository root of an editable install (``compactor/`` sits in it).
REPO = Path(__file__).resolve().parents[2]
#: Where the shared real transcripts live: ``<repo>/../shared/data``.
DEFAULT_DATA = REPO.parent / "shared" / "data"
#: The session the package ships (one Anthropic conversation, ~320 messages).
DEMO_SESSION = Path(__file__).resolve().parents[1] / "data" / "demo_session.jsonl"

_SKIP_SUFFIXES = (".tools.json",)


@dataclass
class Dataset:
    """One input file: its conversations (in their true wire format) and tool schemas.

    ``name`` is the file name without ``.json``/``.jsonl``; ``tools`` are the schemas of the
    ``<stem>.tools.json`` file next to it, used only when the run counts tools.
    """

    name: str
    path: Path
    fmt: Format
    conversations: list[Conversation]
    tools: list[dict[str, Any]] | None = None

    @property
    def has_probes(self) -> bool:
        return any(c.probes for c in self.conversations)

    @property
    def messages(self) -> int:
        return sum(len(c.messages) for c in self.conversations)


def find_files(data: str | Path | None) -> list[Path]:
    """The conversation files of ``data`` (a file, or every ``*.json``/``*.jsonl`` in a
    folder except tool-schema files), sorted by name.

    Raises:
        ConfigError: the path does not exist or holds no conversation file.
    """
    p = Path(data) if data is not None else DEFAULT_DATA
    if p.is_file():
        return [p]
    if not p.is_dir():
        hint = (" (the default is <repo>/../shared/data, absent here)" if data is None else "")
        raise ConfigError(f"--data {p}: no such file or folder{hint}; fix: pass --data with a "
                          "conversation file or a folder of them", field="data", source=str(p))
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".json", ".jsonl")
                   and not f.name.endswith(_SKIP_SUFFIXES))
    if not files:
        raise ConfigError(f"--data {p}: no .json/.jsonl conversation files in this folder",
                          field="data", source=str(p))
    return files


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".jsonl", ".json"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _tools_for(path: Path) -> list[dict[str, Any]] | None:
    """``<base>.tools.json`` next to ``<base>.<fmt>.json(l)`` (tau-bench ships one)."""
    stem = _stem(path)
    base = stem.rsplit(".", 1)[0] if "." in stem else stem
    for cand in (path.with_name(stem + ".tools.json"), path.with_name(base + ".tools.json")):
        if cand.is_file():
            data = json.loads(cand.read_text(encoding="utf-8"))
            return data if isinstance(data, list) else None
    return None


def load_dataset(path: Path, *, limit: int | None = None) -> Dataset:
    """Load one file with ``compactor._replay.load_conversations`` (format detected per
    conversation; a leading system message does not decide it). The dataset's format is
    OpenAI when any conversation is, else Anthropic.
    """
    convs = load_conversations(path, "auto")
    if not convs:
        raise ConfigError(f"{path}: no conversations", field="data", source=str(path))
    fmt = Format.OPENAI if any(c.fmt is Format.OPENAI for c in convs) else Format.ANTHROPIC
    if limit is not None:
        convs = convs[:limit]
    return Dataset(_stem(path), path, fmt, convs, _tools_for(path))


def load_datasets(data: str | Path | None, *, limit: int | None = None) -> list[Dataset]:
    """Every conversation file of ``data`` (see :func:`find_files`), loaded."""
    return [load_dataset(f, limit=limit) for f in find_files(data)]


def resolve_window(spec: str, conv: Conversation, tools: Sequence[Mapping[str, Any]] | None,
                   counter: TokenCounter) -> int:
    """The window of ``conv`` for a ``--windows`` item, in tokens.

    ``"4000"``/``"4k"``: that many tokens. ``"25%"``: the fixed part of the request (the
    system prompt -- Anthropic's top-level one or OpenAI's leading system messages -- and
    tool schemas) plus 25% of the conversation's other messages, rounded up. (Unlike
    ``compactor replay --window 25%``, the share is of the messages only: tau-bench's system
    prompt alone is over 25% of most of its conversations, so a share of the whole request
    would leave no room for any message.)
    """
    window, share = parse_window(spec)
    if share is None:
        assert window is not None
        return window
    lead = leading_system_count(conv.messages, conv.fmt)   # OpenAI's system prompt
    counts = [message_tokens(m, conv.fmt, counter) for m in conv.messages]
    fixed = system_tokens(conv.system, counter) + tools_tokens(tools, counter) + sum(counts[:lead])
    return fixed + max(1, math.ceil(sum(counts[lead:]) * share))


def window_label(spec: str) -> str:
    """``"4000"`` -> ``"4k"``, ``"25%"`` -> ``"25%"`` (the key used in results)."""
    window, share = parse_window(spec)
    if share is not None:
        return f"{share * 100:g}%"
    assert window is not None
    return f"{window / 1000:g}k" if window % 500 == 0 else str(window)


def chained_history(conversations: Sequence[Conversation], n: int) -> tuple[list[dict[str, Any]], Any]:
    """One history of ``n`` messages made by concatenating ``conversations`` (cycling if
    needed), with tool call ids made unique per copy. Returns ``(messages, system)``:
    the first conversation's system prompt (Anthropic) or system message (OpenAI, kept
    as ``messages[0]``)."""
    if not conversations:
        raise ConfigError("no conversations to chain", field="data")
    fmt = conversations[0].fmt
    out: list[dict[str, Any]] = []
    system = conversations[0].system
    copy_no = 0
    while len(out) < n:
        for conv in conversations:
            if conv.fmt is not fmt:
                continue
            msgs = conv.messages
            if fmt is Format.OPENAI and out:
                msgs = [m for m in msgs if m.get("role") not in ("system", "developer")]
            out.extend(_rename_ids(msgs, f"_c{copy_no}"))
            copy_no += 1
            if len(out) >= n:
                break
        if copy_no == 0:
            raise ConfigError("no conversation to chain in the first one's format", field="data")
    return out[:n], system


def _rename_ids(messages: Sequence[Mapping[str, Any]], suffix: str) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        m2 = copy.deepcopy(dict(m))
        content = m2.get("content")
        if isinstance(content, list):
            for b in content:
                if isinstance(b, dict) and b.get("type") == "tool_use":
                    b["id"] = f"{b['id']}{suffix}"
                elif isinstance(b, dict) and b.get("type") == "tool_result":
                    b["tool_use_id"] = f"{b['tool_use_id']}{suffix}"
        for c in m2.get("tool_calls") or []:
            c["id"] = f"{c['id']}{suffix}"
        if m2.get("role") == "tool" and m2.get("tool_call_id"):
            m2["tool_call_id"] = f"{m2['tool_call_id']}{suffix}"
        out.append(m2)
    return out
