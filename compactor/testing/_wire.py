"""The loopback server's protocol logic, with no I/O: request checks, the reference
tokenizer, prompt-cache accounting, and the response bodies and SSE events of the
Anthropic Messages API and OpenAI chat completions.

Everything here is a pure function or a small value object, so the server in
``_server.py`` is only a driver: read a request, call these, write bytes.
"""

from __future__ import annotations

import hashlib
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
    ``prompt_too_long``); ``index`` the message index, when there is one.
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


# --------------------------------------------------------------------------- tokenizer

@runtime_checkable
class ProviderTokenizer(Protocol):
    """How the server counts a request's input tokens (what it reports as usage and
    from ``count_tokens``). One method; must be pure and thread-safe.

    ``count(body) -> int``: the input tokens of a Messages or chat-completions body
    (``system``, ``tools``, ``messages``), in the provider's tokens.
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
        return fixed + math.ceil(chars / self.chars_per_token)


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
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
        stop_reason: default ``"tool_use"`` when there are tool calls, else ``"end_turn"``.
    """

    text: str | None = "ok"
    tool_uses: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    content: tuple[Mapping[str, Any], ...] | None = None
    stop_reason: str | None = None


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


def openai_error(status: int, message: str) -> dict[str, Any]:
    """An OpenAI-style error body for ``status``."""
    kind = {400: "invalid_request_error", 401: "invalid_request_error",
            429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


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


def last_user_text(body: Any) -> str:
    """The text of the last user message of a request body ("" when none)."""
    if not isinstance(body, Mapping):
        return ""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return " ".join(str(b.get("text", "")) for b in blocks(m) if b.get("type") == "text")
    return ""


__all__: Sequence[str] = (
    "ANTHROPIC_ERROR_TYPES", "MAX_CACHE_BREAKPOINTS", "PromptCache", "ProviderTokenizer",
    "RecordedRequest", "ReferenceTokenizer", "Reply", "RequestViolation", "anthropic_error",
    "cache_breakpoints", "chat_body", "check_chat_request", "check_messages_request",
    "last_user_text", "message_body", "openai_error", "redact_headers", "reply_blocks", "sse",
    "stream_events", "text_tokens",
)
