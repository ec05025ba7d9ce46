"""``LoopbackServer``: a real HTTP server on 127.0.0.1 that speaks the Anthropic
Messages API, OpenAI chat completions and the OpenAI Responses API closely enough for
the real SDKs, validates every request against the provider rules, records everything,
and misbehaves on cue.

The message rules (tool pairing, roles, thinking) are judged by ``_rules.py``, a checker
written separately from ``compactor.validate``, so the server is an independent oracle of
what the compactor sends; the request-level rules (model, max_tokens, system, tools,
cache_control, prefill, extra fields) come from ``_wire.py``.

It runs a stdlib ``ThreadingHTTPServer`` in a background thread (one thread per
connection, so concurrent requests are served concurrently). The protocol logic lives
in ``_wire.py``; this module only reads requests, applies scripted faults and writes bytes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Union
from urllib.parse import urlsplit

from . import _rules
from ._wire import (PromptCache, ProviderTokenizer, RecordedRequest, ReferenceTokenizer, Reply,
                    RequestViolation, anthropic_error, chat_body, check_chat_request,
                    check_messages_request, check_responses_request, last_user_text,
                    message_body, openai_error, redact_headers, reply_blocks, responses_body,
                    responses_output, responses_output_tokens, responses_stateful,
                    responses_stream_events, responses_usage, stream_events, text_tokens)

#: A responder turns a recorded request into the model's reply (a ``Reply`` or plain text).
Responder = Callable[[RecordedRequest], Union[Reply, str]]

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
RESPONSES_INPUT_TOKENS_PATH = "/v1/responses/input_tokens"


def echo_responder(request: RecordedRequest) -> Reply:
    """The default responder: a short text reply quoting the start of the last user text."""
    text = " ".join(last_user_text(request.json).split())[:60]
    return Reply(text=f"ok: {text}" if text else "ok")


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, applied to one matching request (see
    :meth:`LoopbackServer.enqueue`). Build them with the class methods.

    Attributes:
        kind: ``status``, ``latency``, ``hang``, ``reset``, ``malformed``, ``truncate``,
            ``empty`` or ``reply``.
        status: the HTTP status of a ``status`` fault.
        retry_after: the ``retry-after`` header value sent with it (seconds or an HTTP
            date), or None.
        seconds: the delay of ``latency`` / the stall of ``hang``, in seconds.
        after_events: how many SSE events a ``truncate`` fault sends before cutting the
            stream (non-streamed replies: half the body is sent).
        reply: the reply of a ``reply`` fault.
        message: the error message of a ``status`` fault.
    """

    kind: str
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    after_events: int = 3
    reply: Reply | None = None
    message: str | None = None

    @classmethod
    def error(cls, status: int, *, retry_after: float | str | None = None,
              message: str | None = None) -> "Fault":
        """Answer with HTTP ``status`` and an Anthropic-style (or OpenAI-style, on the
        chat and Responses paths) error body; ``retry_after`` in seconds (a number) or an
        HTTP date (str)."""
        ra = None if retry_after is None else (
            retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        return cls("status", status=status, retry_after=ra, message=message)

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = 1) -> "Fault":
        """HTTP 429 ``rate_limit_error`` with a ``retry-after`` header (seconds or HTTP date)."""
        return cls.error(429, retry_after=retry_after, message="Number of request tokens has "
                         "exceeded your per-minute rate limit")

    @classmethod
    def overloaded(cls, retry_after: float | str | None = None) -> "Fault":
        """HTTP 529 with the ``overloaded_error`` body."""
        return cls.error(529, retry_after=retry_after, message="Overloaded")

    @classmethod
    def server_error(cls, status: int = 500) -> "Fault":
        """HTTP 500 (or another 5xx) ``api_error``."""
        return cls.error(status, message="Internal server error")

    @classmethod
    def latency(cls, seconds: float) -> "Fault":
        """Wait ``seconds`` before answering normally."""
        return cls("latency", seconds=seconds)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> "Fault":
        """Stall ``seconds`` (longer than the client's timeout), then close the
        connection without a response. Ends early when the server stops."""
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> "Fault":
        """Close the connection with a TCP reset, without any response."""
        return cls("reset")

    @classmethod
    def malformed(cls) -> "Fault":
        """HTTP 200 with ``content-type: application/json`` and a body that is not JSON."""
        return cls("malformed")

    @classmethod
    def truncated_stream(cls, after_events: int = 3) -> "Fault":
        """Cut the response short: a stream after ``after_events`` SSE events, a JSON
        reply after half its body (the connection is closed mid-message)."""
        return cls("truncate", after_events=after_events)

    @classmethod
    def empty_content(cls) -> "Fault":
        """HTTP 200 with an empty ``content`` list (chat: an empty message; Responses: no
        output items)."""
        return cls("empty")

    @classmethod
    def reply_with(cls, reply: Reply | str) -> "Fault":
        """Answer with ``reply`` instead of the responder's reply (e.g. an over-long
        summary)."""
        return cls("reply", reply=Reply(text=reply) if isinstance(reply, str) else reply)


@dataclass
class _Scripted:
    fault: Fault
    path: str | None
    model: str | None
    match: Callable[[RecordedRequest], bool] | None
    remaining: int | None   # None: every matching request


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: "LoopbackServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that reset its connection between requests (the openai SDK closes a
        stream's connection after ``[DONE]`` without reading the chunked body's end, so
        the kernel sends RST) is not an error worth a traceback; others are printed."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """A scripted Anthropic/OpenAI-compatible HTTP server on ``127.0.0.1`` (ephemeral
    port), for testing agents and adapters with the real SDKs and no network.

    Use as a context manager (or :meth:`start` / :meth:`stop`)::

        with LoopbackServer() as server:
            client = anthropic.AsyncAnthropic(base_url=server.url, api_key="test-key",
                                              max_retries=0)
            ...
            assert server.violations == []

    Endpoints: ``POST /v1/messages`` (JSON or SSE with ``"stream": true``),
    ``POST /v1/messages/count_tokens``, ``POST /v1/chat/completions`` (JSON or SSE; a
    stream reports usage only in the extra ``"choices": []`` chunk that
    ``stream_options.include_usage`` asks for, as OpenAI's does),
    ``POST /v1/responses`` (a ``response`` object, or its semantic SSE events) and
    ``POST /v1/responses/input_tokens`` (``{"object": "response.input_tokens",
    "input_tokens": N}``).
    Every Messages / chat / Responses request is validated: its request-level fields as
    ``check_messages_request`` / ``check_chat_request`` / ``check_responses_request``
    say, its messages (Responses: ``input`` items) by the independent checker in
    ``_rules.py`` (not ``compactor.validate``), a chat body's ``stream_options`` as
    :func:`_stream_options_rules` says; an invalid one gets HTTP 400 with the
    provider's error body and is listed in :attr:`violations`.

    Args:
        responder: ``(request) -> Reply | str``, the model (default: :func:`echo_responder`).
        tokenizer: counts input tokens for ``usage`` and ``count_tokens`` (default:
            :class:`ReferenceTokenizer`, deliberately unlike the compactor's counters).
        allow_prefill: accept a trailing assistant message.
        max_context_tokens: reject (400 ``prompt_too_long``) a Messages, chat or
            Responses request whose input tokens, or input + ``max_tokens`` (chat: or
            ``max_completion_tokens``; Responses: ``max_output_tokens``), exceed this;
            None: no limit.
        cache_min_tokens: shortest prefix, in tokens, the simulated prompt cache stores
            (Messages: prefixes ending at ``cache_control``; Responses: automatic prefix
            caching, reported as ``cached_tokens``).
        host: the address to bind (loopback only by default).
    """

    def __init__(self, responder: Responder | None = None, *,
                 tokenizer: ProviderTokenizer | None = None, allow_prefill: bool = False,
                 max_context_tokens: int | None = None, cache_min_tokens: int = 0,
                 host: str = "127.0.0.1") -> None:
        self.responder: Responder = responder or echo_responder
        self.tokenizer: ProviderTokenizer = tokenizer or ReferenceTokenizer()
        self.allow_prefill = allow_prefill
        self.max_context_tokens = max_context_tokens
        self.cache = PromptCache(min_tokens=cache_min_tokens)
        self.host = host
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._violations: list[RequestViolation] = []
        self._script: list[_Scripted] = []
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LoopbackServer":
        """Bind an ephemeral port and serve in a daemon thread. Returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server((self.host, 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="compactor-loopback", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake stalled (``hang``) requests and close open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port. Raises RuntimeError when not started."""
        if self._httpd is None:
            raise RuntimeError("the loopback server is not running; use it as a context manager")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the SDKs' ``base_url``)."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ scripting
    def enqueue(self, *faults: Fault, path: str | None = None, model: str | None = None,
                match: Callable[[RecordedRequest], bool] | None = None,
                times: int | None = 1) -> None:
        """Queue ``faults``, in order, for the next matching requests.

        A request takes the first queued fault whose filters match: ``path`` (exact
        path), ``model`` (the body's model) and ``match`` (a predicate). Each fault
        applies ``times`` times (None: to every matching request until
        :meth:`clear_faults`).
        """
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            for f in faults:
                self._script.append(_Scripted(f, path, model, match, times))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._script.clear()

    def _take_fault(self, rec: RecordedRequest) -> Fault | None:
        with self._lock:
            for i, s in enumerate(self._script):
                if s.path is not None and s.path != rec.path:
                    continue
                if s.model is not None and s.model != rec.model:
                    continue
                if s.match is not None and not s.match(rec):
                    continue
                if s.remaining is not None:
                    s.remaining -= 1
                    if s.remaining <= 0:
                        del self._script[i]
                return s.fault
        return None

    # ------------------------------------------------------------------ records
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[RequestViolation]:
        """Every provider rule broken by a received request (a copy); ``[]`` is the goal."""
        with self._lock:
            return list(self._violations)

    def requests_to(self, path: str | None = None, *, model: str | None = None) -> list[RecordedRequest]:
        """The received requests with this path and/or model."""
        return [r for r in self.requests
                if (path is None or r.path == path) and (model is None or r.model == model)]

    def reset_records(self) -> None:
        """Forget recorded requests and violations (the queue and the cache stay)."""
        with self._lock:
            self._requests.clear()
            self._violations.clear()

    def _record(self, method: str, path: str, headers: Any, body: Any) -> RecordedRequest:
        with self._lock:
            rec = RecordedRequest(len(self._requests), method, path,
                                  redact_headers(headers.items()), body, time.monotonic())
            self._requests.append(rec)
            return rec

    def _finish(self, rec: RecordedRequest, status: int, fault: Fault | None) -> None:
        with self._lock:
            self._requests[rec.seq] = dataclasses.replace(
                self._requests[rec.seq], status=status, fault=fault.kind if fault else None,
                finished_at=time.monotonic())

    def _violate(self, rec: RecordedRequest, found: list[tuple[str, int | None, str]]) -> None:
        with self._lock:
            self._violations.extend(RequestViolation(rec.seq, rec.path, r, i, d)
                                    for r, i, d in found)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"


def _request_rules(found: list[tuple[str, int | None, str]]) -> list[tuple[str, int | None, str]]:
    """The request-level findings of ``_wire``'s checks (its message-level findings, made
    with ``compactor.validate``, are dropped: :func:`_message_rules` judges messages)."""
    return [f for f in found if f[0] not in _rules.MESSAGE_RULES]


#: The JSON type names OpenAI's "Invalid type" errors use, by Python type.
_JSON_TYPES = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal",
               list: "an array", dict: "an object"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _stream_options_rules(body: Any) -> list[tuple[str, int | None, str]]:
    """The rules a chat body's ``stream_options`` breaks, with the API's wording: an
    object (or null), allowed only with ``"stream": true``, whose ``include_usage`` is a
    bool (or null). Rule name ``stream_options``; empty when the field is valid or absent."""
    if not isinstance(body, Mapping) or body.get("stream_options") is None:
        return []
    so = body["stream_options"]
    if not isinstance(so, Mapping):
        return [("stream_options", None, "Invalid type for 'stream_options': expected an "
                 f"object, but got {_json_type(so)} instead.")]
    out: list[tuple[str, int | None, str]] = []
    iu = so.get("include_usage")
    if iu is not None and not isinstance(iu, bool):
        out.append(("stream_options", None, "Invalid type for 'stream_options.include_usage': "
                    f"expected a boolean, but got {_json_type(iu)} instead."))
    if body.get("stream") is not True:
        out.append(("stream_options", None, "The 'stream_options' parameter is only allowed "
                    "when 'stream' is enabled."))
    return out


def _include_usage(body: Mapping[str, Any]) -> bool:
    """Whether a (valid) chat body asks for the usage chunk: ``stream_options.include_usage``
    is true."""
    so = body.get("stream_options")
    return isinstance(so, Mapping) and so.get("include_usage") is True


def _message_rules(body: Any, *, api: str) -> list[tuple[str, int | None, str]]:
    """The message rules ``body["messages"]`` (``api="responses"``: ``body["input"]``)
    breaks, by the independent checker (``api`` ``"anthropic"``: extended thinking on
    when ``body["thinking"]["type"] == "enabled"``)."""
    if not isinstance(body, Mapping):
        return []
    if api == "responses":
        items = body.get("input")
        stateful = responses_stateful(body)
        if items is None or (stateful and items == []):
            return []          # a missing input is a request-level finding
        found = _rules.responses_problems(items, stateful=stateful)
        return [(b.rule, b.index, b.detail) for b in found]
    msgs = body.get("messages")
    if api == "chat":
        found = _rules.openai_problems(msgs)
    else:
        th = body.get("thinking")
        found = _rules.anthropic_problems(
            msgs, thinking=isinstance(th, Mapping) and th.get("type") == "enabled")
    return [(b.rule, b.index, b.detail) for b in found]


def _responses_param(found: list[tuple[str, int | None, str]]) -> str | None:
    """The ``param`` of a Responses 400: the field of the first finding (``input`` for an
    item rule)."""
    rule, index, _ = found[0]
    if index is not None or rule in _rules.MESSAGE_RULES:
        return "input"
    return rule if rule in ("model", "input", "instructions", "max_output_tokens",
                            "tools", "stream") else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "compactor-loopback/1"
    timeout = 60
    # headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every response
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records
        return None

    def setup(self) -> None:
        super().setup()
        with self.server.owner._lock:
            self.server.owner._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.owner._lock:
            self.server.owner._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              extra: Mapping[str, str] | None = None, *, declared_length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(declared_length if declared_length is not None
                                                else len(body)))
        self.send_header("request-id", self._req_id)        # Anthropic's name
        self.send_header("x-request-id", self._req_id)      # OpenAI's (the SDK's _request_id)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, extra: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), extra=extra)

    def _start_chunked(self, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self._req_id)        # Anthropic's name
        self.send_header("x-request-id", self._req_id)      # OpenAI's (the SDK's _request_id)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _abort(self, *, rst: bool) -> None:
        """Drop the connection without (finishing) a response."""
        self.close_connection = True
        sock = self.connection
        try:
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.server.owner._lock:
                self.server.owner._conns.discard(sock)
            os.close(sock.detach())
        except OSError:
            pass

    # ------------------------------------------------------------------ requests
    def do_GET(self) -> None:
        self._req_id = "req_loop_get"
        self._send_json(404, anthropic_error(404, f"no route for GET {self.path}"))

    def do_POST(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = owner._record("POST", path, self.headers, body)
        self._req_id = f"req_loop_{rec.seq:06d}"
        chat = path == CHAT_PATH
        responses = path in (RESPONSES_PATH, RESPONSES_INPUT_TOKENS_PATH)
        counting = path in (COUNT_TOKENS_PATH, RESPONSES_INPUT_TOKENS_PATH)
        if path in (MESSAGES_PATH, COUNT_TOKENS_PATH):
            found = _request_rules(check_messages_request(
                body, allow_prefill=owner.allow_prefill, count_tokens=path == COUNT_TOKENS_PATH))
            found += _message_rules(body, api="anthropic")
        elif chat:
            found = _request_rules(check_chat_request(body)) + _stream_options_rules(body) \
                + _message_rules(body, api="chat")
        elif responses:
            found = _request_rules(check_responses_request(body)) \
                + _message_rules(body, api="responses")
            if counting:    # the count endpoint takes no model
                found = [f for f in found if f[0] != "model"]
        else:
            owner._finish(rec, 404, None)
            self._send_json(404, anthropic_error(404, f"no route for POST {path}"))
            return
        total = owner.tokenizer.count(body) if isinstance(body, Mapping) else 0
        if not counting and owner.max_context_tokens and isinstance(body, Mapping):
            limit = owner.max_context_tokens
            mt = body.get("max_tokens") or body.get("max_completion_tokens") \
                or body.get("max_output_tokens") or 0
            if total > limit:
                found.append(("prompt_too_long", None,
                              f"prompt is too long: {total} tokens > {limit} maximum"))
            elif isinstance(mt, int) and total + mt > limit:
                found.append(("prompt_too_long", None, "input length and `max_tokens` exceed "
                              f"context limit: {total} + {mt} > {limit}"))
        if found:
            owner._violate(rec, found)
        fault = owner._take_fault(rec)
        err = openai_error if chat or responses else anthropic_error
        try:
            if fault is not None:
                if fault.kind == "latency":
                    owner._stopping.wait(fault.seconds)
                elif fault.kind == "hang":
                    owner._stopping.wait(fault.seconds)
                    owner._finish(rec, 0, fault)
                    self._abort(rst=False)
                    return
                elif fault.kind == "reset":
                    owner._finish(rec, 0, fault)
                    self._abort(rst=True)
                    return
                elif fault.kind == "status":
                    extra = {"retry-after": fault.retry_after} if fault.retry_after else {}
                    if fault.status in (429, 529, 503) or fault.status >= 500:
                        extra["x-should-retry"] = "true"
                    owner._finish(rec, fault.status, fault)
                    self._send_json(fault.status, err(fault.status, fault.message or "error"), extra)
                    return
                elif fault.kind == "malformed":
                    owner._finish(rec, 200, fault)
                    self._send(200, b'{"id": "msg_broken", "type": "message", "content": [{"ty')
                    return
            if found:
                owner._finish(rec, 400, fault)
                body400 = err(400, "; ".join(f"{r}: {d}" for r, _, d in found))
                if responses:
                    body400 = openai_error(400, body400["error"]["message"],
                                           _responses_param(found))
                elif chat and found[0][0] == "stream_options":
                    body400 = openai_error(400, body400["error"]["message"], "stream_options")
                self._send_json(400, body400)
                return
            if counting:
                owner._finish(rec, 200, fault)
                self._send_json(200, {"object": "response.input_tokens", "input_tokens": total}
                                if responses else {"input_tokens": total})
                return
            if responses:
                self._answer_responses(rec, body, total, fault)
            else:
                self._answer(rec, body, total, fault, chat)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _reply(self, rec: RecordedRequest, fault: Fault | None) -> Reply:
        """The reply of a ``reply`` fault, else the responder's (text made a ``Reply``)."""
        if fault is not None and fault.kind == "reply" and fault.reply is not None:
            return fault.reply
        got = self.server.owner.responder(rec)
        return Reply(text=got) if isinstance(got, str) else got

    def _stream(self, rec: RecordedRequest, frames: list[bytes], fault: Fault | None,
                truncate: bool) -> None:
        """Send ``frames`` as a chunked SSE body, cut after ``fault.after_events`` frames
        when ``truncate``."""
        owner = self.server.owner
        self._start_chunked()
        for n, frame in enumerate(frames):
            if truncate and n >= fault.after_events:  # type: ignore[union-attr]
                owner._finish(rec, 200, fault)
                self._abort(rst=False)
                return
            self._chunk(frame)
        # recorded before the last bytes go out: a client that has read the whole
        # stream must find the request finished (no race with this thread)
        owner._finish(rec, 200, fault)
        self._end_chunked()

    def _answer(self, rec: RecordedRequest, body: Mapping[str, Any], total: int,
                fault: Fault | None, chat: bool) -> None:
        owner = self.server.owner
        reply = self._reply(rec, fault)
        content = reply_blocks(reply, lambda: owner._next_id("toolu_loop_"))
        if fault is not None and fault.kind == "empty":
            content = []
        stop = reply.stop_reason or ("tool_use" if any(b.get("type") == "tool_use" for b in content)
                                     else "end_turn")
        out_text = "".join(str(b.get("text", "")) + json.dumps(b.get("input", ""))
                           for b in content)
        out_tokens = text_tokens(out_text, owner.tokenizer) if content else 0
        model = str(body.get("model"))
        truncate = fault is not None and fault.kind == "truncate"
        if chat:
            obj = chat_body(cmpl_id=owner._next_id("chatcmpl-loop"), model=model, content=content,
                            stop_reason=stop, prompt_tokens=total, completion_tokens=out_tokens)
            if body.get("stream"):
                self._stream_chat(rec, obj, fault, truncate, include_usage=_include_usage(body))
            else:
                self._json_reply(rec, obj, fault, truncate)
            return
        inp, creation, read = owner.cache.usage(body, total, owner.tokenizer)
        usage = {"input_tokens": inp, "output_tokens": out_tokens,
                 "cache_creation_input_tokens": creation, "cache_read_input_tokens": read}
        obj = message_body(msg_id=owner._next_id("msg_loop_"), model=model, content=content,
                           stop_reason=stop, usage=usage)
        if body.get("stream"):
            self._stream(rec, stream_events(obj), fault, truncate)
        else:
            self._json_reply(rec, obj, fault, truncate)

    def _answer_responses(self, rec: RecordedRequest, body: Mapping[str, Any], total: int,
                          fault: Fault | None) -> None:
        owner = self.server.owner
        reply = self._reply(rec, fault)
        content = reply_blocks(reply, lambda: owner._next_id("call_loop_"))
        include = body.get("include")
        output = responses_output(content, reasoning=reply.reasoning, next_id=owner._next_id,
                                  encrypted=isinstance(include, list)
                                  and "reasoning.encrypted_content" in include,
                                  items=reply.items)
        if fault is not None and fault.kind == "empty":
            output = []
        out_tokens, reasoning = responses_output_tokens(output, owner.tokenizer)
        usage = responses_usage(input_tokens=total,
                                cached_tokens=min(total, owner.cache.prefix_usage(
                                    body, owner.tokenizer)),
                                output_tokens=out_tokens, reasoning_tokens=reasoning)
        obj = responses_body(resp_id=owner._next_id("resp_loop_"), request=body, output=output,
                             usage=usage, incomplete=reply.stop_reason == "max_tokens")
        truncate = fault is not None and fault.kind == "truncate"
        if body.get("stream"):
            self._stream(rec, responses_stream_events(obj), fault, truncate)
        else:
            self._json_reply(rec, obj, fault, truncate)

    def _json_reply(self, rec: RecordedRequest, obj: Any, fault: Fault | None,
                    truncate: bool) -> None:
        data = json.dumps(obj).encode()
        self.server.owner._finish(rec, 200, fault)
        if truncate:
            self._send(200, data[: len(data) // 2], declared_length=len(data))
            self._abort(rst=False)
        else:
            self._send(200, data)

    def _stream_chat(self, rec: RecordedRequest, obj: Mapping[str, Any], fault: Fault | None,
                     truncate: bool, *, include_usage: bool) -> None:
        """Stream ``obj`` (a :func:`chat_body`) as ``chat.completion.chunk`` frames, as the
        API does: a role delta, the content, one delta per tool call, the finish chunk,
        then ``[DONE]``. With ``include_usage`` every chunk carries ``"usage": null`` and
        one more chunk, ``"choices": []`` with the request's usage, comes before
        ``[DONE]``; without it no chunk has a ``usage`` field (API reference,
        ``stream_options.include_usage``)."""
        msg = obj["choices"][0]["message"]
        base = {"id": obj["id"], "object": "chat.completion.chunk", "created": obj["created"],
                "model": obj["model"]}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if msg.get("content"):
            deltas.append({"content": msg["content"]})
        for i, c in enumerate(msg.get("tool_calls") or []):
            deltas.append({"tool_calls": [{"index": i, **c}]})
        null_usage = {"usage": None} if include_usage else {}
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}],
                   **null_usage} for d in deltas]
        chunks.append({**base, "choices": [{"index": 0, "delta": {},
                                            "finish_reason": obj["choices"][0]["finish_reason"]}],
                       **null_usage})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": obj["usage"]})
        frames = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
        frames.append(b"data: [DONE]\n\n")
        self._stream(rec, frames, fault, truncate)


def http_date(seconds_from_now: float) -> str:
    """An HTTP date ``seconds_from_now`` in the future (for ``retry-after``)."""
    return formatdate(time.time() + seconds_from_now, usegmt=True)


__all__ = ["CHAT_PATH", "COUNT_TOKENS_PATH", "MESSAGES_PATH", "RESPONSES_INPUT_TOKENS_PATH",
           "RESPONSES_PATH", "Fault",
           "LoopbackServer", "Responder", "echo_responder", "http_date"]
