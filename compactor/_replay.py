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
from ._format import RESPONSES_ITEMS, Format, detect_format, role_of, text_of
from ._validate import fix_for, validate


@dataclass
class Conversation:
    """One recorded conversation: ``messages`` as they would be sent (Anthropic: without
    the system prompt, which is ``system``), its format and its QA ``probes``. ``index`` is
    its 1-based position in the file it came from (0: not from a file)."""

    id: str
    messages: list[dict[str, Any]]
    fmt: Format
    system: Any = None
    probes: list[dict[str, Any]] = field(default_factory=list)
    index: int = 0


#: Deepest nesting of JSON arrays/objects accepted in one message, in levels. The real
#: transcripts in ../shared/data nest at most 6 levels (tau-bench Anthropic; measured with
#: ``_depth`` over every message); anything near Python's recursion limit (1,000 frames,
#: shared with the code that counts and hashes the message) would fail later with a
#: RecursionError, so the limit sits well between the two.
MAX_DEPTH = 100

_FIX_FILE = ("JSONL of {id, messages, probes?} (one object a line), a JSON list of messages, "
             "a JSON object with messages, or a JSON list of {task_id, trial, traj} runs")


@dataclass(frozen=True)
class InputProblem:
    """One conversation of an input file that cannot be replayed, and why.

    Attributes:
        file: the file, as given.
        conversation: its 1-based position in the file (JSONL: the n-th non-blank line).
        id: its id, when one could be read.
        where: the part at fault: ``messages[i]`` (an index in the file's own list),
            ``probes``, ``traj``, ``line N``, ``id``...
        rule: a short code: a ``compactor.validate`` rule, or ``json``, ``encoding``,
            ``nesting``, ``content_type``, ``session_id``.
        detail: what is wrong, one sentence.
        fix: what to change.
        more: how many further problems the same conversation has (not listed).
    """

    file: str
    conversation: int
    id: str | None
    where: str
    rule: str
    detail: str
    fix: str
    more: int = 0

    def __str__(self) -> str:
        cid = f" (id {_printable(self.id)})" if self.id is not None else ""
        more = f" (and {self.more} more problem{'s' if self.more > 1 else ''})" if self.more \
            else ""
        return (f"{self.file}: conversation {self.conversation}{cid}: {self.where}: "
                f"{self.rule}: {_printable(self.detail, 240)}{more}; fix: {self.fix}")

    def as_dict(self) -> dict[str, Any]:
        """The item of ``input_problems`` in ``compactor replay --json``."""
        return {"conversation": None if self.id is None else _printable(self.id),
                "index": self.conversation, "where": self.where, "rules": [self.rule],
                "error": str(self)}


def _printable(text: str, limit: int = 120) -> str:
    """``text`` safe for one line of UTF-8 output: lone surrogates escaped, control
    characters and newlines shown as escapes, long text cut."""
    t = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if not t.isprintable():
        t = "".join(c if c.isprintable() else repr(c)[1:-1] for c in t)
    return t if len(t) <= limit else t[: limit - 1] + "\u2026"


class _Bad(Exception):
    """One problem found while reading a conversation (internal to the loader)."""

    def __init__(self, where: str, rule: str, detail: str, fix: str, more: int = 0) -> None:
        super().__init__(detail)
        self.where, self.rule, self.detail, self.fix, self.more = where, rule, detail, fix, more


def _kind(value: Any) -> str:
    """How a JSON value is called in an error: ``null``, ``a number``, ``a list``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_printable(repr(value), 40)}"
    return "a list" if isinstance(value, list) else "an object"


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack.extend((x, d + 1) for x in v if isinstance(x, (list, dict)))
    return deepest


def _check_value(where: str, value: Any) -> None:
    """Raise :class:`_Bad` for nesting deeper than :data:`MAX_DEPTH`, NaN or infinite
    numbers (not JSON), or text that is not valid Unicode (a lone surrogate)."""
    if _depth(value) > MAX_DEPTH:
        raise _Bad(where, "nesting", f"nested more than {MAX_DEPTH} levels deep",
                   f"flatten it to at most {MAX_DEPTH} levels of lists and objects")
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as e:
        if not isinstance(e, UnicodeEncodeError):   # NaN, Infinity, or 1e400 read as inf
            raise _Bad(where, "json", "holds NaN or an infinite number, which JSON does not "
                       "allow (providers refuse the request)", "write a finite number, or "
                       "the value as a string") from None
        bad = e.object[e.start:e.end].encode("utf-8", "backslashreplace").decode("ascii")
        raise _Bad(where, "encoding", f"holds a lone surrogate ({bad}), which is not valid "
                   "Unicode", "write the text as valid UTF-8: a \\uD800-\\uDFFF escape must be "
                   "one half of a surrogate pair") from None


def _check_message(i: int, m: Any) -> None:
    """Shape, content type, encoding and depth of ``messages[i]``."""
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise _Bad(where, "shape", f"is {_kind(m)}, not a message object", fix_for("shape"))
    t = m.get("type")
    if "role" not in m and isinstance(t, str) and t != "message":
        _check_value(where, m)      # a Responses item (function_call, reasoning, ...)
        return
    if not isinstance(m.get("role"), str):
        got = "no 'role'" if "role" not in m else f"role {_kind(m['role'])}"
        raise _Bad(where, "shape", f"has {got}; a message needs a string 'role' (a Responses "
                   "item a string 'type')", fix_for("shape"))
    content = m.get("content")
    fix_content = ("make content a string or a list of content blocks ({\"type\": \"text\", "
                   "\"text\": ...}, tool_use, tool_result...)")
    if content is not None and not isinstance(content, (str, list)):
        raise _Bad(where, "content_type", f"content is {_kind(content)}, not a string or a "
                   "list of content blocks", fix_content)
    if isinstance(content, list):
        for k, b in enumerate(content):
            if not isinstance(b, dict) or not isinstance(b.get("type"), str):
                what = _kind(b) if not isinstance(b, dict) else "an object without a string 'type'"
                raise _Bad(f"{where}.content[{k}]", "content_type",
                           f"is {what}, not a content block", fix_content)
            src = b.get("source")
            if src is not None and not isinstance(src, dict):
                raise _Bad(f"{where}.content[{k}].source", "content_type",
                           f"is {_kind(src)}, not an object", "give the block's source as an "
                           "object ({\"type\", \"data\"...})")
    calls = m.get("tool_calls")
    fix_calls = "give tool_calls as a list of {id, type, function: {name, arguments}} objects"
    if calls is not None and not isinstance(calls, list):
        raise _Bad(f"{where}.tool_calls", "content_type", f"is {_kind(calls)}, not a list",
                   fix_calls)
    for k, c in enumerate(calls or []):
        if not isinstance(c, dict) or not isinstance(c.get("function", {}), dict):
            what = _kind(c) if not isinstance(c, dict) else "a call whose function is not an object"
            raise _Bad(f"{where}.tool_calls[{k}]", "content_type", f"is {what}", fix_calls)
    _check_value(where, m)


def _conversation(n: int, cid: str, messages: Any, probes: Any, fmt: str) -> Conversation:
    """Check one conversation and build it (see :func:`read_conversations`).

    Raises:
        _Bad: the first problem found.
    """
    if not isinstance(messages, list):
        raise _Bad("messages", "shape", f"is {_kind(messages)}, not a list of messages",
                   "give each conversation a list of message objects")
    for i, m in enumerate(messages):
        _check_message(i, m)
    if probes is None:
        probes = []
    if not isinstance(probes, list):
        raise _Bad("probes", "shape", f"is {_kind(probes)}, not a list",
                   "give probes as a list of {question, answer} objects, or leave them out")
    for k, pr in enumerate(probes):
        if not isinstance(pr, dict):
            raise _Bad(f"probes[{k}]", "shape", f"is {_kind(pr)}, not an object",
                       "give probes as a list of {question, answer} objects, or leave them out")
    _check_value("probes", probes)
    _check_value("id", cid)
    conv = _from_messages(cid, messages, probes, fmt)
    conv.index = n
    offset = len(messages) - len(conv.messages)   # 1 when a system message was lifted out
    if offset and not (isinstance(conv.system, str) or (
            isinstance(conv.system, list) and all(isinstance(b, dict) for b in conv.system))):
        raise _Bad("messages[0]", "content_type", f"the system prompt is {_kind(conv.system)}",
                   "make the system prompt a string or a list of text blocks")
    found = validate(conv.messages, conv.fmt)
    if found:
        v = found[0]
        where = "messages" if v.index is None else f"messages[{v.index + offset}]"
        if v.tool_id:
            where += f" (tool id {_printable(v.tool_id, 60)})"
        raise _Bad(where, v.rule, v.detail, v.fix, more=len(found) - 1)
    return conv


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


def _read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file; fix: pass a conversation file (.jsonl or .json)",
                          field="path", source=str(p)) from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder; fix: pass a conversation file (.jsonl or .json) "
                          "inside it", field="path", source=str(p)) from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot be read ({e.strerror or e}); fix: check the path and "
                          "that you may read it", field="path", source=str(p)) from None


def _decode(raw: bytes) -> str:
    """UTF-8 text of ``raw``; raises ``UnicodeDecodeError``."""
    return raw.decode("utf-8-sig")


class _TooDeep(ValueError):
    """JSON nested too deeply for the parser."""


def _parse(text: str) -> Any:
    """``json.loads`` that reports nesting too deep for the parser as :class:`_TooDeep`
    (a ``ValueError``, like every other way the text is not JSON)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _TooDeep(f"nested too deeply for the JSON parser (more than {MAX_DEPTH} "
                       "levels are not accepted)") from None


def read_conversations(path: str | Path, fmt: str = "auto"
                       ) -> tuple[list[Conversation], list[InputProblem]]:
    """Read every conversation of a file that can be replayed, and name the ones that cannot.

    Accepted (``fmt="auto"`` detects): our JSONL line schema (``{id, messages, probes?}``
    a line; a leading ``system`` message becomes the Anthropic system prompt), an OpenAI
    JSON list of runs (``[{task_id, trial, traj: [...]}]``, tau-bench style), a JSON list of
    ``{id, messages}`` objects, a JSON object with ``messages``, or a plain JSON list of
    messages. A file is JSONL when at least two of its lines are each one ``{...}`` object.
    Messages may be OpenAI Responses API items (``function_call``, ``reasoning``...;
    detected, or ``fmt="responses"``); a leading ``system`` item then stays in the list.

    Each conversation is checked: its line is UTF-8 JSON, an object with a list of message
    objects (string ``role``, or a Responses item's string ``type``; content a string or a
    list of typed blocks), no lone
    surrogate, at most :data:`MAX_DEPTH` levels of nesting, ``probes`` a list of objects,
    and the provider rules of its format (``compactor.validate``). A conversation that fails
    is left out and named by an :class:`InputProblem` (its first problem).

    Returns:
        ``(conversations, problems)``, each in file order.

    Raises:
        ConfigError: the file as a whole cannot be read: missing, a folder, unreadable,
            empty, not UTF-8 / not JSON (outside JSONL), or not one of the shapes above
            (the message names the file, what was found and the fix).
    """
    p = Path(path)
    raw = _read_bytes(p)
    if not raw.strip():
        raise ConfigError(f"{p}: the file is empty; fix: {_FIX_FILE}", field="path",
                          source=str(p))
    lines = raw.split(b"\n")
    filled = [ln for ln in lines if ln.strip()]
    objects = sum(1 for ln in filled if ln.lstrip(b" \t\xef\xbb\xbf").startswith(b"{")
                  and ln.rstrip().endswith(b"}"))
    convs: list[Conversation] = []
    problems: list[InputProblem] = []

    def add(n: int, cid: str | None, build: Callable[[], Conversation]) -> None:
        try:
            convs.append(build())
        except _Bad as b:
            problems.append(InputProblem(str(path), n, getattr(b, "cid", cid), b.where, b.rule,
                                         b.detail, b.fix, b.more))

    if objects >= 2 or (len(filled) > 1 and _is_object_line(filled[0])):
        # JSONL: one conversation a line, each judged on its own
        n = 0
        for ln_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            n += 1
            add(n, None, lambda: _jsonl_line(p, n, ln_no, line, fmt))
        return convs, problems
    try:
        text = _decode(raw)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "fix: save the file as UTF-8", field="path", source=str(p)) from None
    try:
        data = _parse(text)
    except ValueError as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        where = f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) \
            else ""
        raise ConfigError(f"{p}: not JSON or JSONL: {msg}{where}; fix: {_FIX_FILE}",
                          field="path", source=str(p)) from None
    if isinstance(data, dict):
        if "messages" in data:
            cid = str(data.get("id", p.stem))
            add(1, cid, lambda: _conversation(1, cid, data["messages"], data.get("probes"), fmt))
            return convs, problems
        raise ConfigError(f"{p}: a JSON object without 'messages' (keys: "
                          f"{', '.join(sorted(map(str, data))[:8]) or 'none'}); fix: {_FIX_FILE}",
                          field="path", source=str(p))
    if not isinstance(data, list):
        raise ConfigError(f"{p}: holds {_kind(data)}, not conversations; fix: {_FIX_FILE}",
                          field="path", source=str(p))
    if not data:
        raise ConfigError(f"{p}: an empty JSON list, no conversations; fix: {_FIX_FILE}",
                          field="path", source=str(p))
    objs = [x for x in data if isinstance(x, dict)]
    if any("traj" in x for x in objs):
        for n, run in enumerate(data, 1):
            if not isinstance(run, dict):
                add(n, None, _raiser(_Bad(f"runs[{n - 1}]", "shape", f"is {_kind(run)}, not a "
                                          "{task_id, trial, traj} run", "give every run an "
                                          "object with a traj list")))
                continue
            cid = f"{p.stem}/task{run.get('task_id', n - 1)}-trial{run.get('trial', 0)}"
            add(n, cid, lambda: _run(n, cid, run, "openai" if fmt == "auto" else fmt))
        return convs, problems
    if any("messages" in x for x in objs):
        for n, obj in enumerate(data, 1):
            if not isinstance(obj, dict):
                add(n, None, _raiser(_Bad(f"conversations[{n - 1}]", "shape", f"is {_kind(obj)}"
                                          ", not an {id, messages} object",
                                          "give every conversation an object with messages")))
                continue
            cid = f"{p.stem}#{n}" if obj.get("id") is None else str(obj["id"])
            add(n, cid, lambda: _conversation(n, cid, obj.get("messages"), obj.get("probes"), fmt))
        return convs, problems
    if any("role" in x or x.get("type") in RESPONSES_ITEMS for x in objs):
        add(1, p.stem, lambda: _conversation(1, p.stem, data, None, fmt))
        return convs, problems
    if objs and all("input_schema" in x or "function" in x or "parameters" in x for x in objs):
        raise ConfigError(f"{p}: this is a list of tool schemas, not a conversation; fix: "
                          f"pass it as --tools {p}", field="path", source=str(p))
    raise ConfigError(f"{p}: a JSON list of {_kind(data[0])}..., not conversations; fix: "
                      f"{_FIX_FILE}", field="path", source=str(p))


def _is_object_line(line: bytes) -> bool:
    """Whether ``line`` alone is one JSON object (the first line of a JSONL file)."""
    try:
        return isinstance(_parse(_decode(line)), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _raiser(bad: _Bad) -> Callable[[], Conversation]:
    def build() -> Conversation:
        raise bad
    return build


def _run(n: int, cid: str, run: dict[str, Any], fmt: str) -> Conversation:
    if not isinstance(run.get("traj"), list):
        raise _Bad("traj", "shape", f"is {_kind(run.get('traj'))}, not a list of messages",
                   "give every run a traj list of messages, or drop the run")
    try:
        return _conversation(n, cid, run["traj"], None, fmt)
    except _Bad as b:
        b.where = b.where.replace("messages", "traj", 1)
        raise


def _jsonl_line(p: Path, n: int, ln_no: int, line: bytes, fmt: str) -> Conversation:
    """One JSONL line as a conversation; once its id is read, a problem carries it."""
    where = f"line {ln_no}"
    try:
        text = _decode(line) if ln_no == 1 else line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Bad(where, "encoding", f"not UTF-8 (byte 0x{line[e.start]:02x} at column "
                   f"{e.start + 1})", "save the file as UTF-8") from None
    try:
        obj = _parse(text)
    except json.JSONDecodeError as e:
        raise _Bad(where, "json", f"not JSON ({e.msg} at column {e.colno})",
                   "write one JSON object per line") from None
    except _TooDeep as e:
        raise _Bad(where, "nesting", str(e), f"flatten it to at most {MAX_DEPTH} levels of "
                   "lists and objects") from None
    except ValueError as e:   # e.g. an integer of more than 4,300 digits
        raise _Bad(where, "json", f"not readable JSON ({e})", "write one JSON object per "
                   "line, numbers within what JSON readers accept") from None
    if not isinstance(obj, dict):
        raise _Bad(where, "shape", f"is {_kind(obj)}, not an {{id, messages}} object",
                   "write one {\"id\": ..., \"messages\": [...]} object per line")
    cid = f"{p.stem}#{n}" if obj.get("id") is None else str(obj["id"])
    try:
        return _conversation(n, cid, obj.get("messages"), obj.get("probes"), fmt)
    except _Bad as b:
        raise _IdBad(cid, b) from None


class _IdBad(_Bad):
    """A :class:`_Bad` that knows the conversation's id (JSONL lines learn it late)."""

    def __init__(self, cid: str, b: _Bad) -> None:
        super().__init__(b.where, b.rule, b.detail, b.fix, b.more)
        self.cid = cid


def load_conversations(path: str | Path, fmt: str = "auto") -> list[Conversation]:
    """Every conversation of a file (see :func:`read_conversations` for the shapes and the
    checks), or an error for the first one that cannot be replayed.

    Raises:
        ConfigError: the file cannot be read as a whole, or a conversation in it breaks a
            check (the message is the :class:`InputProblem` line: file, conversation, id,
            where, rule and fix).
    """
    convs, problems = read_conversations(path, fmt)
    if problems:
        raise ConfigError(str(problems[0]), field="messages", source=str(path))
    return convs


def load_tools(path: str | Path | None) -> list[dict[str, Any]] | None:
    """Tool schemas from a JSON list file (Anthropic or OpenAI format), or None.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 JSON, or is not a list of
            objects (the message names ``--tools``, the file and the fix).
    """
    if path is None:
        return None
    p = Path(path)
    fix = "fix: pass a JSON list of tool schemas ({name, input_schema} or {type, function})"
    try:
        data = _parse(_decode(p.read_bytes()))
    except OSError as e:
        raise ConfigError(f"--tools {p}: cannot be read ({e.strerror or e}); {fix}",
                          field="tools", source=str(p)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"--tools {p}: not UTF-8 (byte offset {e.start}); {fix}",
                          field="tools", source=str(p)) from None
    except ValueError as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise ConfigError(f"--tools {p}: not JSON ({msg}); {fix}", field="tools",
                          source=str(p)) from None
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise ConfigError(f"--tools {p}: holds {_kind(data)}, not a list of tool schema "
                          f"objects; {fix}", field="tools", source=str(p))
    try:
        _check_value("tools", data)
    except _Bad as b:
        raise ConfigError(f"--tools {p}: {b.detail}; fix: {b.fix}", field="tools",
                          source=str(p)) from None
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
        raise ConfigError(f"--window {value!r}: expected tokens or a share of each "
                          "conversation; fix: e.g. 4000, 8k or 25%", field="window") from None


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
    #: per probe kind (the probe's ``kind``, else its ``category_name``, else "probe"):
    #: ``{"contained": n, "ceiling": n}`` -- answers in what is sent, and in the full history
    probes_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
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


def _scored(pr: Mapping[str, Any]) -> str | None:
    """The probe's normalized answer, or None for a probe not scored (LoCoMo category 5,
    adversarial: its answer is not in the conversation; or an empty answer)."""
    if pr.get("category") == 5:
        return None
    return normalize(str(pr.get("answer", ""))) or None


def _probe_hits(probes: Sequence[Mapping[str, Any]], text: str) -> tuple[int, int]:
    hay = " " + normalize(text) + " "
    total = hits = 0
    for pr in probes:
        ans = _scored(pr)
        if ans is None:
            continue
        total += 1
        hits += (" " + ans + " ") in hay
    return total, hits


def _kind_of(pr: Mapping[str, Any]) -> str:
    return str(pr.get("kind") or pr.get("category_name") or "probe")


def _context_text(system: Any, messages: Sequence[Mapping[str, Any]]) -> str:
    sys_text = system if isinstance(system, str) else \
        "\n".join(str(b.get("text", "")) for b in system or [] if isinstance(b, Mapping))
    return sys_text + "\n" + "\n".join(text_of(m) for m in messages)


async def replay_conversation(conv: Conversation, compactor: MessageCompactor, stats: ReplayStats,
                              *, window: int | None, share: float | None,
                              tools: list[dict[str, Any]] | None, model: str | None = None,
                              keep_events: bool = False, probe_mode: str = "end") -> None:
    """Replay one conversation, adding its figures to ``stats``.

    Probes (``{question, answer}``) are scored on the context the next model call would
    see: ``probe_mode="end"`` -- the compacted history at the end of the conversation;
    ``"question"`` -- the same, plus what question-time recall places in the request when
    the probe's question is the newest user turn (the question's own text is not
    searched). The ceiling is the full history either way."""
    stats.conversations += 1
    msgs, f = conv.messages, conv.fmt
    if share is not None:
        full = compactor.count_request(msgs, system=conv.system, tools=tools, fmt=f)
        window = max(1, math.ceil(full * share))
    input_rules: set[str] = set()
    for v in validate(msgs, f):
        input_rules.add(v.rule)
    if input_rules:
        stats.input_problems.append({"conversation": conv.id, "index": conv.index,
                                     "rules": sorted(input_rules)})
    history: list[Any] = []
    broken = False
    for msg in msgs:
        is_call = (role_of(msg, f) == "assistant" and history
                   and role_of(history[-1], f) != "assistant"
                   and any(role_of(m, f) != "system" for m in history))
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
                stats.input_problems.append({"conversation": conv.id, "index": conv.index,
                                             "rules": [e.rule], "error": str(e)[:300]})
                broken = True
                history.append(msg)
                continue
            history = list(res.messages)
            request = res.to_send()   # with a recall block, when one was placed
            stats.model_calls += 1
            sent = compactor.count_request(request, system=conv.system, tools=tools, fmt=f)
            stats.tokens_sent += sent
            if window is not None and sent > res.window:
                stats.over_window += 1
            new_rules = {v.rule for v in validate(request, f)} - input_rules
            if request and role_of(request[-1], f) == "assistant":
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
    res = None
    if not broken:
        try:
            res = await compactor.compact_if_needed(history, system=conv.system, tools=tools,
                                                    window=window, model=model,
                                                    session_id=conv.id, fmt=f)
            final = res.messages
        except (ContextOverflowError, InvalidHistoryError):
            final = history
    if conv.probes:
        context = _context_text(conv.system, final)
        full_hay = " " + normalize(_context_text(conv.system, msgs)) + " "
        hay = " " + normalize(context) + " "
        for pr in conv.probes:
            ans = _scored(pr)
            if ans is None:
                continue
            needle = " " + ans + " "
            hit = needle in hay
            if not hit and probe_mode == "question" and res is not None:
                recalled = await _recalled_for(compactor, res, conv.id, str(pr.get("question", "")))
                hit = needle in " " + normalize(context + "\n" + recalled) + " "
            in_full = needle in full_hay
            stats.probes_total += 1
            stats.probes_contained += hit
            stats.probes_ceiling += in_full
            k = stats.probes_by_kind.setdefault(_kind_of(pr), {"contained": 0, "ceiling": 0})
            k["contained"] += hit
            k["ceiling"] += in_full


async def _recalled_for(compactor: MessageCompactor, res: Any, session_id: str,
                        question: str) -> str:
    """The text question-time recall would place for ``question`` asked after ``res``
    (nothing without a store or with ``recall_share`` 0); the archive is not touched."""
    if getattr(compactor, "store", None) is None or getattr(compactor, "recall_share", 0) <= 0:
        return ""
    import dataclasses

    from ._recall import with_recall

    q = {"role": "user", "content": question}
    probe = dataclasses.replace(res, messages=[*res.messages, q],
                                tokens_after=res.tokens_after + compactor.counter.count(question))
    state = compactor.session(session_id)
    excl = {o for o, h in state.view if o is not None and o < len(state.branch)
            and state.branch[o] == h} if state.view else None
    rr = await with_recall(compactor, probe, session_id=session_id,
                           share=compactor.recall_share, exclude_ordinals=excl)
    return rr.block.text if rr.block else ""


async def replay(conversations: Sequence[Conversation], compactor: MessageCompactor, *,
                 window: int | None = None, share: float | None = None,
                 tools: list[dict[str, Any]] | None = None, model: str | None = None,
                 keep_events: bool = False,
                 progress: Callable[[int], None] | None = None,
                 probe_mode: str = "end") -> ReplayStats:
    """Replay every conversation; ``progress(n)`` is called after each one. ``probe_mode``:
    see :func:`replay_conversation`."""
    stats = ReplayStats()
    t0 = time.perf_counter()
    for n, conv in enumerate(conversations, 1):
        await replay_conversation(conv, compactor, stats, window=window, share=share,
                                  tools=tools, model=model, keep_events=keep_events,
                                  probe_mode=probe_mode)
        if progress:
            progress(n)
    stats.seconds = time.perf_counter() - t0
    return stats
