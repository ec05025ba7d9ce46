"""Replay recorded conversations through the compactor, the way an agent loop would.

Before each model call -- each point where the next message is the assistant's and the
previous one is not -- the history so far goes through ``compact_if_needed``; the replay
continues from the compacted history plus the real next messages. Every history that
would be sent is checked against the provider rules and the window.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ._compactor import MessageCompactor
from ._errors import ConfigError, ContextOverflowError, InvalidHistoryError
from ._facts import normalize
from ._format import Format, detect_format, text_of
from ._validate import validate


@dataclass
class Conversation:
    """One recorded conversation: ``messages`` as they would be sent (Anthropic: without
    the system prompt, which is ``system``), its format and its QA ``probes``."""

    id: str
    messages: list[dict[str, Any]]
    fmt: Format
    system: Any = None
    probes: list[dict[str, Any]] = field(default_factory=list)


def _from_messages(cid: str, messages: list[dict[str, Any]], probes: list[dict[str, Any]],
                   fmt: str) -> Conversation:
    if fmt != "auto":
        f = Format(fmt)
    elif messages and messages[0].get("role") == "system" and len(messages) > 1:
        # our JSONL schema puts the system prompt first in either format: detect on the rest
        # (any other system/developer message there still makes it OpenAI)
        f = detect_format(messages[1:])
    else:
        f = detect_format(messages)
    system = None
    if f is Format.ANTHROPIC and messages and messages[0].get("role") == "system":
        system, messages = messages[0].get("content"), messages[1:]
    return Conversation(cid, messages, f, system, probes)


def load_conversations(path: str | Path, fmt: str = "auto") -> list[Conversation]:
    """Read conversations from a file.

    Accepted (``fmt="auto"`` detects): our JSONL line schema (``{id, messages, probes?}``
    a line; a leading ``system`` message becomes the Anthropic system prompt), an OpenAI
    JSON list of runs (``[{task_id, trial, traj: [...]}]``, tau-bench style), a JSON object
    with ``messages``, or a plain JSON list of messages.

    Raises:
        ConfigError: the file is missing or not one of those shapes (the message says which
            shape was found and what to pass instead).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file; fix: pass a conversation file (.jsonl or .json)",
                          field="path", source=str(p))
    text = p.read_text(encoding="utf-8")
    convs: list[Conversation] = []
    stripped = text.lstrip()
    if stripped.startswith("{") and "\n{" in stripped.strip():
        for n, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{p}:{n}: not JSON ({e.msg}); fix: one JSON object per line",
                                  field="line", source=str(p)) from e
            if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
                raise ConfigError(f"{p}:{n}: expected {{id, messages, probes?}}", field="messages",
                                  source=str(p))
            convs.append(_from_messages(str(obj.get("id", f"{p.stem}#{n}")), obj["messages"],
                                        obj.get("probes") or [], fmt))
        return convs
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not JSON or JSONL ({e.msg})", field="path", source=str(p)) from e
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return [_from_messages(str(data.get("id", p.stem)), data["messages"],
                               data.get("probes") or [], fmt)]
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        if all("traj" in x for x in data):
            for n, run in enumerate(data):
                cid = f"{p.stem}/task{run.get('task_id', n)}-trial{run.get('trial', 0)}"
                convs.append(_from_messages(cid, run["traj"], [], "openai" if fmt == "auto" else fmt))
            return convs
        if all("role" in x for x in data):
            return [_from_messages(p.stem, data, [], fmt)]
        if all("input_schema" in x or "function" in x or "parameters" in x for x in data):
            raise ConfigError(f"{p}: this is a list of tool schemas, not a conversation; fix: "
                              f"pass it as --tools {p}", field="path", source=str(p))
    raise ConfigError(f"{p}: not a conversation file; fix: JSONL of {{id, messages}}, a JSON "
                      "list of messages, or a list of {traj} runs", field="path", source=str(p))


def load_tools(path: str | Path | None) -> list[dict[str, Any]] | None:
    """Tool schemas from a JSON list file (Anthropic or OpenAI format), or None."""
    if path is None:
        return None
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"--tools {p}: cannot read a JSON list of tool schemas ({e})",
                          field="tools", source=str(p)) from e
    if not isinstance(data, list):
        raise ConfigError(f"--tools {p}: expected a JSON list of tool schemas", field="tools",
                          source=str(p))
    return data


def parse_window(value: str) -> tuple[int | None, float | None]:
    """``"4000"`` -> (4000, None); ``"25%"`` -> (None, 0.25): a share of each conversation.

    Raises:
        ConfigError: not a positive integer or a percentage in (0, 100].
    """
    v = value.strip()
    try:
        if v.endswith("%"):
            share = float(v[:-1]) / 100
            if not 0 < share <= 1:
                raise ValueError
            return None, share
        n = int(v.replace("_", "").lower().replace("k", "000"))
        if n <= 0:
            raise ValueError
        return n, None
    except ValueError:
        raise ConfigError(f"--window {value!r}: expected tokens (e.g. 4000, 8k) or a share of "
                          "each conversation (e.g. 25%)", field="window") from None


@dataclass
class ReplayStats:
    """Sums over a replay. Token figures in tokens, ``seconds`` in seconds."""

    conversations: int = 0
    model_calls: int = 0
    compactions: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    tokens_sent: int = 0
    invalid_histories: int = 0
    over_window: int = 0
    overflows: int = 0
    must_keep_total: int = 0
    must_keep_kept: int = 0
    probes_total: int = 0
    probes_contained: int = 0
    probes_ceiling: int = 0
    input_problems: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object ``compactor replay --json`` prints."""
        d = {k: v for k, v in self.__dict__.items() if k != "events"}
        d["compaction_ratio"] = round(1 - self.tokens_after / self.tokens_before, 4) \
            if self.tokens_before else 0.0
        d["must_keep_rate"] = round(self.must_keep_kept / self.must_keep_total, 4) \
            if self.must_keep_total else 1.0
        d["probes_vs_ceiling"] = round(self.probes_contained / self.probes_ceiling, 4) \
            if self.probes_ceiling else None
        d["seconds"] = round(self.seconds, 3)
        return d


def _probe_hits(probes: Sequence[Mapping[str, Any]], text: str) -> tuple[int, int]:
    hay = " " + normalize(text) + " "
    total = hits = 0
    for pr in probes:
        if pr.get("category") == 5:
            continue
        ans = normalize(str(pr.get("answer", "")))
        if not ans:
            continue
        total += 1
        hits += (" " + ans + " ") in hay
    return total, hits


def _context_text(system: Any, messages: Sequence[Mapping[str, Any]]) -> str:
    sys_text = system if isinstance(system, str) else \
        "\n".join(str(b.get("text", "")) for b in system or [] if isinstance(b, Mapping))
    return sys_text + "\n" + "\n".join(text_of(m) for m in messages)


async def replay_conversation(conv: Conversation, compactor: MessageCompactor, stats: ReplayStats,
                              *, window: int | None, share: float | None,
                              tools: list[dict[str, Any]] | None, model: str | None = None,
                              keep_events: bool = False) -> None:
    """Replay one conversation, adding its figures to ``stats``."""
    stats.conversations += 1
    msgs, f = conv.messages, conv.fmt
    if share is not None:
        full = compactor.count_request(msgs, system=conv.system, tools=tools, fmt=f)
        window = max(1, math.ceil(full * share))
    input_rules: set[str] = set()
    for v in validate(msgs, f):
        input_rules.add(v.rule)
    if input_rules:
        stats.input_problems.append({"conversation": conv.id, "rules": sorted(input_rules)})
    history: list[Any] = []
    broken = False
    for msg in msgs:
        is_call = (msg.get("role") == "assistant" and history
                   and history[-1].get("role") != "assistant"
                   and any(m.get("role") != "system" for m in history))
        if is_call and not broken:
            try:
                res = await compactor.compact_if_needed(history, system=conv.system, tools=tools,
                                                        window=window, model=model,
                                                        session_id=conv.id, fmt=f)
            except ContextOverflowError:
                stats.overflows += 1
                history.append(msg)
                continue
            except InvalidHistoryError as e:
                stats.input_problems.append({"conversation": conv.id, "rules": [e.rule],
                                             "error": str(e)[:300]})
                broken = True
                history.append(msg)
                continue
            history = list(res.messages)
            stats.model_calls += 1
            sent = compactor.count_request(history, system=conv.system, tools=tools, fmt=f)
            stats.tokens_sent += sent
            if window is not None and sent > res.window:
                stats.over_window += 1
            new_rules = {v.rule for v in validate(history, f)} - input_rules
            if history and history[-1].get("role") == "assistant":
                new_rules.add("trailing_assistant")
            if new_rules:
                stats.invalid_histories += 1
            if res.compacted:
                stats.compactions += 1
                stats.tokens_before += res.tokens_before
                stats.tokens_after += res.tokens_after
                stats.must_keep_total += res.must_keep_total
                stats.must_keep_kept += res.must_keep_kept
                if keep_events:
                    stats.events.append({
                        "conversation": conv.id, "call": stats.model_calls,
                        "tokens_before": res.tokens_before, "tokens_after": res.tokens_after,
                        "ratio": round(res.ratio, 3), "removed": len(res.removed),
                        "retention": round(res.retention_score, 3),
                        "summary_tokens": compactor.counter.count(res.summary or ""),
                        "summary": res.summary})
        history.append(msg)
    # the context the next model call would see
    final = history
    if not broken:
        try:
            res = await compactor.compact_if_needed(history, system=conv.system, tools=tools,
                                                    window=window, model=model,
                                                    session_id=conv.id, fmt=f)
            final = res.messages
        except (ContextOverflowError, InvalidHistoryError):
            final = history
    if conv.probes:
        t, h = _probe_hits(conv.probes, _context_text(conv.system, final))
        _, c = _probe_hits(conv.probes, _context_text(conv.system, msgs))
        stats.probes_total += t
        stats.probes_contained += h
        stats.probes_ceiling += c


async def replay(conversations: Sequence[Conversation], compactor: MessageCompactor, *,
                 window: int | None = None, share: float | None = None,
                 tools: list[dict[str, Any]] | None = None, model: str | None = None,
                 keep_events: bool = False,
                 progress: Callable[[int], None] | None = None) -> ReplayStats:
    """Replay every conversation; ``progress(n)`` is called after each one."""
    stats = ReplayStats()
    t0 = time.perf_counter()
    for n, conv in enumerate(conversations, 1):
        await replay_conversation(conv, compactor, stats, window=window, share=share,
                                  tools=tools, model=model, keep_events=keep_events)
        if progress:
            progress(n)
    stats.seconds = time.perf_counter() - t0
    return stats
