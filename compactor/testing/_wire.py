"""The loopback server's protocol logic, with no I/O: request checks, the reference
tokenizer, prompt-cache accounting, and the response bodies and SSE events of the
Anthropic Messages API, OpenAI chat completions and the OpenAI Responses API.

Everything here is a pure function or a small value object, so the server in
``_server.py`` is only a driver: read a request, call these, write bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from .._errors import ConfigError
from .._format import PIN_KEY, Format, blocks
from .._redact import is_secret_key, redact_obj
from .._validate import validate
from ..adapters._caching import MAX_CACHE_BREAKPOINTS, cache_breakpoints
from . import _rules


#: Keys a Messages API message object accepts; anything else is a 400
#: ("Extra inputs are not permitted").
ANTHROPIC_MESSAGE_KEYS = frozenset({"role", "content"})

#: Anthropic error ``type`` per HTTP status (the API's documented error shapes).
ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 408: "timeout_error", 409: "conflict_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    502: "api_error", 503: "api_error", 504: "timeout_error", 529: "overloaded_error",
}


# --------------------------------------------------------------------------- recording

@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as the tests see it.

    Attributes:
        seq: 0-based arrival order.
        method / path: e.g. ``"POST"``, ``"/v1/messages"`` (query string removed).
        headers: lower-cased header names; the value of a credential header
            (``x-api-key``, ``authorization``, ``api-key``, ``cookie``... any name
            ``compactor._redact.is_secret_key`` accepts) is ``"[REDACTED]"``, and other
            values pass through ``compactor._redact.redact``.
        json: the parsed body (``None`` when it was not JSON).
        received_at / finished_at: ``time.monotonic()`` seconds when the request was
            read and when the reply was written (``finished_at`` is 0.0 until then).
        fault: the name of the fault applied to it, or None.
        status: the HTTP status sent (0 when no response was sent: reset, hang).
    """

    seq: int
    method: str
    path: str
    headers: Mapping[str, str]
    json: Any
    received_at: float
    fault: str | None = None
    status: int = 0
    finished_at: float = 0.0

    @property
    def model(self) -> str | None:
        """The ``model`` field of a JSON body, if any."""
        return self.json.get("model") if isinstance(self.json, Mapping) else None

    @property
    def had_credentials(self) -> bool:
        """Whether an API key or Authorization header was sent (its value is never kept)."""
        return any(is_secret_key(k) for k in self.headers)


@dataclass(frozen=True)
class RequestViolation:
    """A provider rule a received request broke (the server answered it with HTTP 400).

    ``request`` is the ``seq`` of the :class:`RecordedRequest`; ``rule`` a short code
    (the :func:`compactor.validate` codes plus ``body``, ``model``, ``max_tokens``,
    ``system``, ``prefill``, ``extra_field``, ``tools``, ``cache_control``, ``stream``,
    ``prompt_too_long``, and for the Responses API ``input``, ``instructions``,
    ``max_output_tokens``, ``orphan_reasoning``); ``index`` the message index (the
    ``input`` item index for the Responses API), when there is one.
    """

    request: int
    path: str
    rule: str
    index: int | None
    detail: str

    def __str__(self) -> str:
        where = f"messages[{self.index}]" if self.index is not None else "request"
        return f"{self.path} #{self.request}: {self.rule}: {where}: {self.detail}"


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased headers with every credential value replaced by ``"[REDACTED]"``
    (:func:`compactor._redact.redact_obj`: a credential-named header's whole value, and any
    secret inside another header's value)."""
    out: dict[str, str] = redact_obj({k.lower(): v for k, v in headers})
    return out


# --------------------------------------------------------------------------- checks

def _v(rule: str, detail: str, index: int | None = None) -> tuple[str, int | None, str]:
    return (rule, index, detail)


def check_messages_request(body: Any, *, allow_prefill: bool = False,
                           count_tokens: bool = False) -> list[tuple[str, int | None, str]]:
    """The provider rules a ``POST /v1/messages`` (or ``/count_tokens``) body breaks.

    Checks: a JSON object; ``model`` a non-empty string; ``max_tokens`` a positive int
    (not for ``count_tokens``); ``messages`` valid by :func:`compactor.validate` in the
    Anthropic format with no open tool calls at the end; message objects with only
    ``role``/``content`` (so our pin flag must have been stripped); ``system`` a string
    or a list of text blocks, never a message role; no trailing ``assistant`` message
    (prefill) unless ``allow_prefill``; every tool named (custom tools with an
    ``input_schema``); at most :data:`MAX_CACHE_BREAKPOINTS` ``cache_control`` markers;
    ``stream`` a bool.

    Returns:
        ``(rule, message index or None, detail)`` triples; empty when the body is valid.
    """
    if not isinstance(body, Mapping):
        return [_v("body", "the request body must be a JSON object")]
    out: list[tuple[str, int | None, str]] = []
    model = body.get("model")
    if not isinstance(model, str) or not model:
        out.append(_v("model", "model: Field required (a non-empty string)"))
    if not count_tokens:
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            out.append(_v("max_tokens", f"max_tokens: Field required (an integer >= 1), got {mt!r}"))
        if "stream" in body and not isinstance(body["stream"], bool):
            out.append(_v("stream", "stream must be a boolean"))
    messages = body.get("messages")
    if not isinstance(messages, list):
        out.append(_v("empty_messages", "messages: Field required (a list)"))
        return out
    for i, m in enumerate(messages):
        if isinstance(m, Mapping):
            extra = sorted(set(m) - ANTHROPIC_MESSAGE_KEYS)
            if extra:
                out.append(_v("extra_field", f"messages.{i}.{extra[0]}: Extra inputs are not "
                              "permitted" + (" (strip the compactor's pin flag before sending)"
                                             if PIN_KEY in extra else ""), i))
    out.extend((v.rule, v.index, v.detail) for v in
               validate(messages, Format.ANTHROPIC, allow_open_calls_at_end=False))
    if messages and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant" \
            and not allow_prefill:
        out.append(_v("prefill", "this model does not support assistant message prefill; the "
                      "conversation must end with a user message", len(messages) - 1))
    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for j, b in enumerate(system):
                if not isinstance(b, Mapping) or b.get("type") != "text" \
                        or not isinstance(b.get("text"), str):
                    out.append(_v("system", f"system.{j}: system blocks must be text blocks"))
        elif not isinstance(system, str):
            out.append(_v("system", "system must be a string or a list of text blocks"))
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            out.append(_v("tools", "tools must be a list"))
        else:
            for j, t in enumerate(tools):
                if not isinstance(t, Mapping) or not isinstance(t.get("name"), str):
                    out.append(_v("tools", f"tools.{j}.name: Field required"))
                elif t.get("type") in (None, "custom") and not isinstance(t.get("input_schema"), Mapping):
                    out.append(_v("tools", f"tools.{j}.input_schema: Field required"))
    n = cache_breakpoints(body)
    if n > MAX_CACHE_BREAKPOINTS:
        out.append(_v("cache_control", f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with "
                      f"cache_control may be provided. Found {n}."))
    return out


def check_chat_request(body: Any) -> list[tuple[str, int | None, str]]:
    """The rules a ``POST /v1/chat/completions`` body breaks: a JSON object with a
    ``model`` and ``messages`` valid by :func:`compactor.validate` in the OpenAI format
    (no open tool calls at the end, ``arguments`` as JSON strings) and no pin flag.

    Returns:
        ``(rule, message index or None, detail)`` triples; empty when the body is valid.
    """
    if not isinstance(body, Mapping):
        return [_v("body", "the request body must be a JSON object")]
    out: list[tuple[str, int | None, str]] = []
    if not isinstance(body.get("model"), str) or not body.get("model"):
        out.append(_v("model", "you must provide a model parameter"))
    messages = body.get("messages")
    if not isinstance(messages, list):
        out.append(_v("empty_messages", "messages: a list is required"))
        return out
    for i, m in enumerate(messages):
        if isinstance(m, Mapping) and PIN_KEY in m:
            out.append(_v("extra_field", f"messages[{i}]: Unrecognized request argument "
                          f"supplied: {PIN_KEY}", i))
    out.extend((v.rule, v.index, v.detail) for v in
               validate(messages, Format.OPENAI, allow_open_calls_at_end=False))
    return out


#: The smallest ``max_output_tokens`` the Responses API accepts ("integer below minimum
#: value. Expected a value >= 16"; API reference, ``max_output_tokens``).
RESPONSES_MIN_OUTPUT_TOKENS = 16


def responses_stateful(body: Any) -> bool:
    """Whether a Responses body continues a conversation the provider stores
    (``previous_response_id`` or ``conversation`` set): its ``input`` is then only the
    new items, and an output may answer a call made in an earlier response."""
    return isinstance(body, Mapping) and bool(body.get("previous_response_id")
                                              or body.get("conversation"))


def check_responses_request(body: Any) -> list[tuple[str, int | None, str]]:
    """The rules a ``POST /v1/responses`` body breaks.

    Checks: a JSON object; ``model`` a non-empty string; ``input`` a string or a list of
    items (required unless the request continues a stored conversation or names a
    ``prompt``) whose items keep the Responses rules of the independent checker
    (``compactor.testing._rules.responses_problems``: call/output pairing by ``call_id``,
    ``arguments`` strings, reasoning items followed by their item, roles, empty content;
    pairing with calls of a stored conversation is not checked); no item carrying the
    compactor's pin flag; ``instructions`` a string (or null); ``max_output_tokens`` an
    integer >= :data:`RESPONSES_MIN_OUTPUT_TOKENS`; ``stream`` a bool; ``tools`` a list
    whose function tools are flat (``{"type": "function", "name": ...}``, not the chat
    ``{"function": {...}}`` shape).

    Returns:
        ``(rule, input item index or None, detail)`` triples; empty when the body is valid.
    """
    if not isinstance(body, Mapping):
        return [_v("body", "the request body must be a JSON object")]
    out: list[tuple[str, int | None, str]] = []
    if not isinstance(body.get("model"), str) or not body.get("model"):
        out.append(_v("model", "Missing required parameter: 'model'."))
    stateful = responses_stateful(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        out.append(_v("instructions", "Invalid type for 'instructions': expected a string, "
                      f"but got {type(instructions).__name__} instead."))
    mot = body.get("max_output_tokens")
    if mot is not None and (not isinstance(mot, int) or isinstance(mot, bool)
                            or mot < RESPONSES_MIN_OUTPUT_TOKENS):
        out.append(_v("max_output_tokens", "Invalid 'max_output_tokens': integer below "
                      f"minimum value. Expected a value >= {RESPONSES_MIN_OUTPUT_TOKENS}, "
                      f"but got {mot!r} instead."))
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        out.append(_v("stream", "stream must be a boolean"))
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            out.append(_v("tools", "Invalid type for 'tools': expected an array."))
        else:
            for j, t in enumerate(tools):
                if not isinstance(t, Mapping) or not isinstance(t.get("type"), str):
                    out.append(_v("tools", f"Missing required parameter: 'tools[{j}].type'."))
                elif t["type"] == "function" and not isinstance(t.get("name"), str):
                    out.append(_v("tools", f"Missing required parameter: 'tools[{j}].name'."))
    items = body.get("input")
    if items is None:
        if not stateful and body.get("prompt") is None:
            out.append(_v("input", "Missing required parameter: 'input'."))
        return out
    if not isinstance(items, (str, list)):
        out.append(_v("input", "Invalid type for 'input': expected a string or an array of "
                      "input items."))
        return out
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, Mapping) and PIN_KEY in item:
                out.append(_v("extra_field", f"Unknown parameter: 'input[{i}].{PIN_KEY}' "
                              "(strip the compactor's pin flag before sending)", i))
        if not items and stateful:
            return out
    out.extend((b.rule, b.index, b.detail) for b in
               _rules.responses_problems(items, stateful=stateful))
    return out


# --------------------------------------------------------------------------- tokenizer

@runtime_checkable
class ProviderTokenizer(Protocol):
    """How the server counts a request's input tokens (what it reports as usage and
    from ``count_tokens``). One method; must be pure and thread-safe.

    ``count(body) -> int``: the input tokens of a Messages, chat-completions or
    Responses body (``system``, ``tools``, ``messages``; ``instructions``, ``input``), in
    the provider's tokens.
    """

    def count(self, body: Mapping[str, Any]) -> int: ...


def _canon(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class ReferenceTokenizer:
    """A deterministic stand-in for a provider tokenizer, deliberately different from
    the compactor's counters, so calibration can be tested.

    tokens = ``request_overhead`` + ``per_message`` per message + ``per_tool`` per tool
    schema + ``per_block`` per tool_use/tool_result block + ``image_tokens`` per image +
    ceil(characters of all text, tool JSON and tool results / ``chars_per_token``).

    Args (all counts in tokens, except ``chars_per_token`` in characters per token):
        chars_per_token: default 3.1 (denser than the ~4 of English BPE).

    Raises:
        ConfigError: ``chars_per_token`` is not positive (``field="chars_per_token"``).
    """

    def __init__(self, chars_per_token: float = 3.1, *, per_message: int = 7,
                 per_tool: int = 24, per_block: int = 12, request_overhead: int = 3,
                 image_tokens: int = 1500) -> None:
        if chars_per_token <= 0:
            raise ConfigError(f"chars_per_token must be > 0, got {chars_per_token}",
                              field="chars_per_token")
        self.chars_per_token = chars_per_token
        self.per_message = per_message
        self.per_tool = per_tool
        self.per_block = per_block
        self.request_overhead = request_overhead
        self.image_tokens = image_tokens

    def count(self, body: Mapping[str, Any]) -> int:
        chars = 0
        fixed = self.request_overhead
        system = body.get("system")
        if isinstance(system, str):
            chars += len(system)
        elif isinstance(system, list):
            chars += sum(len(str(b.get("text", ""))) for b in system if isinstance(b, Mapping))
        for t in body.get("tools") or []:
            fixed += self.per_tool
            chars += len(_canon({k: v for k, v in t.items() if k != "cache_control"})
                         if isinstance(t, Mapping) else str(t))
        for m in body.get("messages") or []:
            if not isinstance(m, Mapping):
                continue
            fixed += self.per_message
            content = m.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                for b in content:
                    if not isinstance(b, Mapping):
                        continue
                    t = b.get("type")
                    if t == "text":
                        chars += len(str(b.get("text", "")))
                    elif t == "thinking":
                        chars += len(str(b.get("thinking", "")))
                    elif t == "tool_use":
                        fixed += self.per_block
                        chars += len(str(b.get("name", ""))) + len(_canon(b.get("input", {})))
                    elif t == "tool_result":
                        fixed += self.per_block
                        inner = b.get("content")
                        if isinstance(inner, str):
                            chars += len(inner)
                        elif isinstance(inner, list):
                            for x in inner:
                                if isinstance(x, Mapping) and x.get("type") == "image":
                                    fixed += self.image_tokens
                                elif isinstance(x, Mapping):
                                    chars += len(str(x.get("text", "")))
                    elif t == "image":
                        fixed += self.image_tokens
                    else:
                        chars += len(_canon(b))
            for c in m.get("tool_calls") or []:
                fixed += self.per_block
                chars += len(_canon(c))
        if "input" in body or "instructions" in body:
            f, c = self._responses(body)
            fixed, chars = fixed + f, chars + c
        return fixed + math.ceil(chars / self.chars_per_token)

    def _responses(self, body: Mapping[str, Any]) -> tuple[int, int]:
        """``(fixed tokens, characters)`` of a Responses body's ``instructions`` and
        ``input``: a string input is one message; a message item costs ``per_message``,
        a function call / output / reasoning item ``per_block``; an image part
        ``image_tokens``; reasoning counts its summary text, not its encrypted content."""
        fixed = chars = 0
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            chars += len(instructions)
        items = body.get("input")
        if isinstance(items, str):
            return self.per_message, chars + len(items)
        for it in items if isinstance(items, list) else []:
            if not isinstance(it, Mapping):
                continue
            kind = it.get("type") or ("message" if "role" in it else None)
            if kind == "message":
                fixed += self.per_message
                content = it.get("content")
                parts = [{"type": "input_text", "text": content}] if isinstance(content, str) \
                    else content if isinstance(content, list) else []
                for p in parts:
                    if not isinstance(p, Mapping):
                        continue
                    if p.get("type") in ("input_image", "input_file"):
                        fixed += self.image_tokens
                    else:
                        chars += len(str(p.get("text", p.get("refusal", ""))))
            elif kind == "function_call":
                fixed += self.per_block
                chars += len(str(it.get("name", ""))) + len(str(it.get("arguments", "")))
            elif kind == "function_call_output":
                fixed += self.per_block
                out = it.get("output")
                chars += len(out) if isinstance(out, str) else len(_canon(out))
            elif kind == "reasoning":
                fixed += self.per_block
                chars += sum(len(str(x.get("text", ""))) for x in it.get("summary") or []
                             if isinstance(x, Mapping))
            else:
                fixed += self.per_block
                chars += len(_canon(it))
        return fixed, chars


def text_tokens(text: str, tokenizer: ReferenceTokenizer | ProviderTokenizer) -> int:
    """Output tokens of a reply text, by the same tokenizer (1 at least)."""
    cpt = getattr(tokenizer, "chars_per_token", 3.1)
    return max(1, math.ceil(len(text) / cpt))


# --------------------------------------------------------------------------- prompt cache

def _prefix_bodies(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request prefix ending at each ``cache_control`` breakpoint, in cache order
    (tools, then system, then messages)."""
    out: list[dict[str, Any]] = []
    model = body.get("model")
    tools = list(body.get("tools") or [])
    for i, t in enumerate(tools):
        if isinstance(t, Mapping) and t.get("cache_control"):
            out.append({"model": model, "tools": tools[: i + 1]})
    system = body.get("system")
    if isinstance(system, list):
        for j, b in enumerate(system):
            if isinstance(b, Mapping) and b.get("cache_control"):
                out.append({"model": model, "tools": tools, "system": system[: j + 1]})
    messages = list(body.get("messages") or [])
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list):
            for j, b in enumerate(content):
                if isinstance(b, Mapping) and b.get("cache_control"):
                    out.append({"model": model, "tools": tools, "system": system,
                                "messages": messages[:i] + [{**m, "content": content[: j + 1]}]})
    return out


def _strip_cache_control(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _strip_cache_control(v) for k, v in obj.items() if k != "cache_control"}
    if isinstance(obj, list):
        return [_strip_cache_control(x) for x in obj]
    return obj


@dataclass
class PromptCache:
    """Simulated prompt caching: a prefix ending at a ``cache_control`` breakpoint is
    written on first sight and read when a later request has a byte-identical prefix
    (``cache_control`` markers themselves excluded). Entries never expire. Prefixes
    shorter than ``min_tokens`` are not cached (the real API's minimum is 1,024 or 2,048
    tokens depending on the model; the default here is 0 so small tests can cache).

    Thread-safe.
    """

    min_tokens: int = 0
    _keys: set[str] = field(default_factory=set)
    _prefixes: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prefix_usage(self, body: Mapping[str, Any], tokenizer: ProviderTokenizer) -> int:
        """``cached_tokens`` of a Responses body under automatic prefix caching (OpenAI
        caches without markers): the tokens of the longest prefix (``model``,
        ``instructions``, ``tools`` and the first k ``input`` items, k >= 1) that an
        earlier Responses request sent byte for byte, when it is at least ``min_tokens``;
        0 otherwise. Unlike the real API (1,024 tokens at least, in 128-token steps), the
        count is not rounded. Every prefix of this request is remembered."""
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else \
            list(items) if isinstance(items, list) else []
        h = hashlib.sha256(_canon({"model": body.get("model"),
                                   "instructions": body.get("instructions"),
                                   "tools": body.get("tools")}).encode())
        keys = []
        for it in items:
            h.update(_canon(it).encode())
            keys.append(h.hexdigest())
        with self._lock:
            hit = max((k for k, key in enumerate(keys, 1) if key in self._prefixes), default=0)
            self._prefixes.update(keys)
        if not hit:
            return 0
        n = tokenizer.count({"model": body.get("model"), "instructions": body.get("instructions"),
                             "tools": body.get("tools"), "input": items[:hit]})
        return n if n >= self.min_tokens else 0

    def usage(self, body: Mapping[str, Any], total: int,
              tokenizer: ProviderTokenizer) -> tuple[int, int, int]:
        """``(input_tokens, cache_creation_input_tokens, cache_read_input_tokens)`` for a
        request of ``total`` input tokens; they sum to ``total``."""
        points = []
        for p in _prefix_bodies(body):
            n = min(tokenizer.count(p), total)
            if n >= self.min_tokens:
                key = hashlib.sha256(_canon(_strip_cache_control(p)).encode()).hexdigest()
                points.append((key, n))
        if not points:
            return total, 0, 0
        with self._lock:
            read = 0
            for key, n in points:
                if key in self._keys:
                    read = max(read, n)
            last = max(n for _, n in points)
            creation = max(0, last - read)
            self._keys.update(k for k, _ in points)
        return total - read - creation, creation, read


# --------------------------------------------------------------------------- replies

@dataclass(frozen=True)
class Reply:
    """What the scripted model answers.

    Attributes:
        text: the reply text (a ``text`` block; ``None`` or ``""`` for none).
        tool_uses: ``(name, input)`` pairs, one ``tool_use`` block each (parallel calls
            when more than one); the server assigns unique ids.
        content: raw content blocks; when given, wins over ``text`` and ``tool_uses``
            (``()`` gives an empty content list).
        stop_reason: default ``"tool_use"`` when there are tool calls, else ``"end_turn"``
            (``"max_tokens"`` makes a Responses reply ``incomplete``).
        reasoning: Responses API only: the summary text of a ``reasoning`` item sent
            before the output (with an opaque ``encrypted_content`` when the request's
            ``include`` lists ``"reasoning.encrypted_content"``, else null); its tokens
            count as ``output_tokens_details.reasoning_tokens``. Ignored by the other
            endpoints.
        items: Responses API only: raw output items, sent as given (wins over ``text``,
            ``tool_uses``, ``content`` and ``reasoning``); a missing item ``id``, a
            function call's ``call_id`` and ``status`` are filled in, ``arguments`` given
            as a mapping are JSON-encoded. Ignored by the other endpoints.

    On ``/v1/responses`` text blocks become one assistant ``message`` item
    (``output_text`` parts) and each tool use a ``function_call`` item (``call_id`` from
    the server, ``arguments`` a JSON string).
    """

    text: str | None = "ok"
    tool_uses: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    content: tuple[Mapping[str, Any], ...] | None = None
    stop_reason: str | None = None
    reasoning: str | None = None
    items: tuple[Mapping[str, Any], ...] | None = None


def reply_blocks(reply: Reply, next_id: Any) -> list[dict[str, Any]]:
    """The Anthropic content blocks of ``reply``; ``next_id()`` gives tool_use ids."""
    if reply.content is not None:
        return [dict(b) for b in reply.content]
    out: list[dict[str, Any]] = []
    if reply.text:
        out.append({"type": "text", "text": reply.text})
    for name, inp in reply.tool_uses:
        out.append({"type": "tool_use", "id": next_id(), "name": name, "input": dict(inp)})
    return out


def message_body(*, msg_id: str, model: str, content: list[dict[str, Any]],
                 stop_reason: str, usage: Mapping[str, int]) -> dict[str, Any]:
    """A Messages API response object."""
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": dict(usage)}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """An Anthropic-style error body for ``status``."""
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
                                       "message": message}}


def openai_error(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body for ``status`` (``param``: the request field at fault,
    e.g. ``"input"``, as the Responses API names it)."""
    kind = {400: "invalid_request_error", 401: "invalid_request_error",
            429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``event: <name>\\ndata: <json>\\n\\n``."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chunks(s: str, n: int) -> list[str]:
    return [s[i:i + n] for i in range(0, len(s), n)] or [""]


def stream_events(body: Mapping[str, Any], *, chunk_chars: int = 24) -> list[bytes]:
    """The SSE events of a streamed Messages response equivalent to ``body`` (a
    :func:`message_body`): ``message_start`` (empty content, input usage),
    ``content_block_start``/``content_block_delta``/``content_block_stop`` per block
    (``text_delta`` or ``input_json_delta``), a ``ping``, ``message_delta`` (stop
    reason, output usage) and ``message_stop``."""
    usage = dict(body["usage"])
    start_msg = {**body, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
    out = [sse("message_start", {"type": "message_start", "message": start_msg})]
    for i, b in enumerate(body["content"]):
        t = b.get("type")
        if t == "text":
            out.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {"type": "text", "text": ""}}))
            if i == 0:
                out.append(sse("ping", {"type": "ping"}))
            for part in _chunks(str(b.get("text", "")), chunk_chars):
                out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "text_delta", "text": part}}))
        elif t == "tool_use":
            out.append(sse("content_block_start", {
                "type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}))
            for part in _chunks(json.dumps(b.get("input", {})), chunk_chars):
                out.append(sse("content_block_delta", {
                    "type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": part}}))
        else:
            out.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": dict(b)}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": body["stop_reason"],
                                               "stop_sequence": None},
                                     "usage": {"output_tokens": usage.get("output_tokens", 1)}}))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return out


def chat_body(*, cmpl_id: str, model: str, content: list[dict[str, Any]], stop_reason: str,
              prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """An OpenAI chat-completions response with the same content (tool_use blocks become
    ``tool_calls`` with JSON-string ``arguments``)."""
    text = "".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    calls = [{"id": b["id"], "type": "function",
              "function": {"name": b["name"], "arguments": json.dumps(b.get("input", {}))}}
             for b in content if b.get("type") == "tool_use"]
    message: dict[str, Any] = {"role": "assistant", "content": text if (text or not calls) else None}
    if calls:
        message["tool_calls"] = calls
    finish = {"tool_use": "tool_calls", "max_tokens": "length"}.get(stop_reason, "stop")
    return {"id": cmpl_id, "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message,
                                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


_ITEM_ID_PREFIX = {"message": "msg_loop_", "function_call": "fc_loop_", "reasoning": "rs_loop_"}


def _complete_item(item: Mapping[str, Any], next_id: Any) -> dict[str, Any]:
    """A raw output item with what the SDKs rely on filled in (see ``Reply.items``)."""
    out = dict(item)
    kind = out.get("type", "message")
    out.setdefault("type", kind)
    out.setdefault("id", next_id(_ITEM_ID_PREFIX.get(kind, "item_loop_")))
    if kind == "function_call":
        out.setdefault("call_id", next_id("call_loop_"))
        if isinstance(out.get("arguments"), Mapping):
            out["arguments"] = json.dumps(out["arguments"])
        out.setdefault("arguments", "{}")
        out.setdefault("status", "completed")
    elif kind == "message":
        out.setdefault("role", "assistant")
        out.setdefault("status", "completed")
        out["content"] = [{"annotations": [], **p} if isinstance(p, Mapping)
                          and p.get("type") == "output_text" else p
                          for p in out.get("content") or []]
    elif kind == "reasoning":
        out.setdefault("summary", [])
    return out


def responses_output_tokens(output: list[Mapping[str, Any]],
                            tokenizer: ProviderTokenizer) -> tuple[int, int]:
    """``(output_tokens, reasoning_tokens)`` of Responses output items: reasoning is its
    summary text, the rest the text of messages and the name + arguments of calls (other
    items: their JSON); at least 1 when there is any output."""
    text = reasoning = ""
    for it in output:
        kind = it.get("type")
        if kind == "message":
            text += "".join(str(p.get("text", p.get("refusal", "")))
                            for p in it.get("content") or [] if isinstance(p, Mapping))
        elif kind == "function_call":
            text += str(it.get("name", "")) + str(it.get("arguments", ""))
        elif kind == "reasoning":
            reasoning += "".join(str(p.get("text", "")) for p in it.get("summary") or []
                                 if isinstance(p, Mapping))
        else:
            text += _canon(it)
    r = text_tokens(reasoning, tokenizer) if reasoning else 0
    n = (text_tokens(text, tokenizer) if text else 0) + r
    return (max(n, 1) if output else 0), r


def responses_output(content: list[dict[str, Any]], *, reasoning: str | None,
                     next_id: Any, encrypted: bool = True,
                     items: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The Responses API output items of a reply: a ``reasoning`` item when ``reasoning``
    is given (its ``encrypted_content`` an opaque string when ``encrypted``, else null,
    as the API sends it only when ``include`` lists ``reasoning.encrypted_content``),
    the text blocks of ``content`` (Anthropic blocks, :func:`reply_blocks`) as
    one assistant ``message`` at the place of the first, each ``tool_use`` block as a
    ``function_call`` item (its ``id`` the ``call_id``); other blocks are dropped.
    ``items`` (``Reply.items``), when given, are the output instead, completed.
    ``next_id(prefix)`` gives item ids."""
    if items is not None:
        return [_complete_item(i, next_id) for i in items]
    out: list[dict[str, Any]] = []
    if reasoning:
        out.append({"id": next_id("rs_loop_"), "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": reasoning}],
                    "encrypted_content": "gAAAA" + hashlib.sha256(reasoning.encode())
                    .hexdigest() if encrypted else None})
    message: dict[str, Any] | None = None
    for b in content:
        t = b.get("type")
        if t == "text":
            part = {"type": "output_text", "text": str(b.get("text", "")), "annotations": [],
                    "logprobs": []}
            if message is None:
                message = {"id": next_id("msg_loop_"), "type": "message", "role": "assistant",
                           "status": "completed", "content": []}
                out.append(message)
            message["content"].append(part)
        elif t == "tool_use":
            out.append({"id": next_id("fc_loop_"), "type": "function_call",
                        "call_id": str(b["id"]), "name": str(b["name"]),
                        "arguments": json.dumps(b.get("input", {})), "status": "completed"})
    return out


def responses_body(*, resp_id: str, request: Mapping[str, Any], output: list[dict[str, Any]],
                   usage: Mapping[str, Any] | None, incomplete: bool = False,
                   created_at: int | None = None) -> dict[str, Any]:
    """A Responses API ``response`` object for ``request`` (its ``model``,
    ``instructions``, ``tools``, ``tool_choice``, ``previous_response_id``... echoed),
    ``status`` ``completed`` (``incomplete`` with reason ``max_output_tokens`` when
    ``incomplete``)."""
    return {
        "id": resp_id, "object": "response",
        "created_at": int(time.time()) if created_at is None else created_at,
        "status": "incomplete" if incomplete else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": str(request.get("model")),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": list(request.get("tools") or []),
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": dict(usage) if usage is not None else None,
        "user": None,
        "metadata": request.get("metadata") or {},
    }


def responses_usage(*, input_tokens: int, cached_tokens: int, output_tokens: int,
                    reasoning_tokens: int) -> dict[str, Any]:
    """A Responses ``usage`` object; ``output_tokens`` includes ``reasoning_tokens``."""
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens}


def responses_stream_events(body: Mapping[str, Any], *, chunk_chars: int = 24) -> list[bytes]:
    """The SSE events of a streamed Responses reply equivalent to ``body`` (a
    :func:`responses_body`), each with its ``sequence_number``: ``response.created`` and
    ``response.in_progress`` (status ``in_progress``, no output, no usage); per output
    item ``response.output_item.added``, then for a message
    ``response.content_part.added``, ``response.output_text.delta``...,
    ``response.output_text.done``, ``response.content_part.done``; for a function call
    ``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``;
    for reasoning ``response.reasoning_summary_part.added``,
    ``response.reasoning_summary_text.delta``/``.done``,
    ``response.reasoning_summary_part.done``; then ``response.output_item.done``; last
    ``response.completed`` (or ``response.incomplete``) with the whole response."""
    seq = itertools.count()
    out: list[bytes] = []

    def ev(kind: str, **data: Any) -> None:
        out.append(sse(kind, {"type": kind, "sequence_number": next(seq), **data}))

    start = {**body, "status": "in_progress", "output": [], "usage": None,
             "incomplete_details": None}
    ev("response.created", response=start)
    ev("response.in_progress", response=start)
    for oi, item in enumerate(body["output"]):
        t, iid = item.get("type"), item.get("id")
        if t == "message":
            ev("response.output_item.added", output_index=oi,
               item={**item, "status": "in_progress", "content": []})
            for ci, part in enumerate(item["content"]):
                ev("response.content_part.added", item_id=iid, output_index=oi,
                   content_index=ci, part={**part, "text": ""})
                for d in _chunks(str(part.get("text", "")), chunk_chars):
                    ev("response.output_text.delta", item_id=iid, output_index=oi,
                       content_index=ci, delta=d, logprobs=[])
                ev("response.output_text.done", item_id=iid, output_index=oi,
                   content_index=ci, text=part.get("text", ""), logprobs=[])
                ev("response.content_part.done", item_id=iid, output_index=oi,
                   content_index=ci, part=part)
        elif t == "function_call":
            ev("response.output_item.added", output_index=oi,
               item={**item, "status": "in_progress", "arguments": ""})
            for d in _chunks(str(item.get("arguments", "")), chunk_chars):
                ev("response.function_call_arguments.delta", item_id=iid, output_index=oi,
                   delta=d)
            ev("response.function_call_arguments.done", item_id=iid, output_index=oi,
               arguments=item.get("arguments", ""))
        elif t == "reasoning":
            ev("response.output_item.added", output_index=oi, item={**item, "summary": []})
            for si, part in enumerate(item.get("summary") or []):
                ev("response.reasoning_summary_part.added", item_id=iid, output_index=oi,
                   summary_index=si, part={**part, "text": ""})
                for d in _chunks(str(part.get("text", "")), chunk_chars):
                    ev("response.reasoning_summary_text.delta", item_id=iid, output_index=oi,
                       summary_index=si, delta=d)
                ev("response.reasoning_summary_text.done", item_id=iid, output_index=oi,
                   summary_index=si, text=part.get("text", ""))
                ev("response.reasoning_summary_part.done", item_id=iid, output_index=oi,
                   summary_index=si, part=part)
        else:
            ev("response.output_item.added", output_index=oi, item=item)
        ev("response.output_item.done", output_index=oi, item=item)
    ev("response.incomplete" if body.get("status") == "incomplete" else "response.completed",
       response=body)
    return out


def last_user_text(body: Any) -> str:
    """The text of the last user message of a request body ("" when none); for a
    Responses body, of its ``input`` (a string input is that text)."""
    if not isinstance(body, Mapping):
        return ""
    if "input" in body and "messages" not in body:
        items = body.get("input")
        if isinstance(items, str):
            return items
        for it in reversed(items if isinstance(items, list) else []):
            if isinstance(it, Mapping) and it.get("role") == "user" \
                    and it.get("type", "message") == "message":
                c = it.get("content")
                if isinstance(c, str):
                    return c
                return " ".join(str(p.get("text", "")) for p in c or []
                                if isinstance(p, Mapping) and p.get("type") == "input_text")
        return ""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return " ".join(str(b.get("text", "")) for b in blocks(m) if b.get("type") == "text")
    return ""


__all__: Sequence[str] = (
    "ANTHROPIC_ERROR_TYPES", "MAX_CACHE_BREAKPOINTS", "PromptCache", "ProviderTokenizer",
    "RecordedRequest", "ReferenceTokenizer", "Reply", "RequestViolation", "anthropic_error",
    "cache_breakpoints", "chat_body", "check_chat_request", "check_messages_request",
    "check_responses_request", "last_user_text", "message_body", "openai_error",
    "redact_headers", "reply_blocks", "responses_body", "responses_output",
    "responses_output_tokens",
    "responses_stateful", "responses_stream_events", "responses_usage", "sse",
    "stream_events", "text_tokens", "RESPONSES_MIN_OUTPUT_TOKENS",
)
