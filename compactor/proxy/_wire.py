"""What the proxy does to bytes on the wire (pure: no I/O).

* which request headers go upstream (:func:`upstream_headers`: everything but hop-by-hop
  headers and the proxy's own ``x-compactor-*`` ones; credentials untouched);
* which response headers come back (:func:`client_headers`: everything but hop-by-hop
  headers, ``retry-after`` and the provider's own headers included);
* the error bodies the proxy itself answers with, in the provider's shape
  (:func:`error_body`);
* :class:`UsageScanner`: reads the provider's ``usage`` out of a response as its bytes pass
  through (JSON or SSE, gzip/deflate decoded on a copy), without holding the response back.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any, Iterable, Mapping

from .._format import Format

#: Hop-by-hop headers (RFC 9110 section 7.6.1) and the ones the HTTP client sets itself.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-authenticate",
                        "proxy-authorization", "host", "content-length"})
#: Prefix of the proxy's own request headers (never forwarded).
OWN_PREFIX = "x-compactor-"
#: Most bytes of a JSON response read for its ``usage`` (larger ones are not scanned).
MAX_SCAN_BYTES = 8 * 1024 * 1024


def upstream_headers(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request headers to forward: every ``(name, value)`` but hop-by-hop headers
    and ``x-compactor-*`` ones, in order, values untouched (credentials included)."""
    return [(k, v) for k, v in items
            if k.lower() not in HOP_BY_HOP and not k.lower().startswith(OWN_PREFIX)]


def client_headers(items: Iterable[tuple[bytes, bytes]], *,
                   keep_length: bool) -> list[tuple[bytes, bytes]]:
    """The response headers to relay (raw ``(name, value)`` bytes, duplicates kept):
    every one but hop-by-hop headers; ``content-length`` kept when ``keep_length``
    (the body is relayed byte for byte, so the length stays true)."""
    out = []
    for k, v in items:
        low = k.lower()
        if low == b"content-length":
            if keep_length:
                out.append((low, v))
            continue
        if low.decode("latin-1") in HOP_BY_HOP:
            continue
        out.append((low, v))
    return out


def error_body(fmt: Format, status: int, message: str) -> bytes:
    """A provider-shaped error body (Anthropic: ``{"type": "error", "error": {...}}``;
    OpenAI: ``{"error": {"message", "type", "code"}}``) for an answer the proxy itself
    gives (a refused or oversized request, an unreachable upstream)."""
    kind = {400: "invalid_request_error", 401: "authentication_error",
            403: "permission_error", 404: "not_found_error", 413: "request_too_large",
            502: "api_error", 504: "api_error"}.get(status, "api_error")
    if fmt is Format.OPENAI:
        obj: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None,
                                         "code": kind}}
    else:
        obj = {"type": "error", "error": {"type": kind, "message": message}}
    return json.dumps(obj).encode()


def usage_numbers(usage: Any) -> tuple[int, int]:
    """``(input tokens, output tokens)`` of a provider ``usage`` object: Anthropic's
    ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` and
    ``output_tokens``; OpenAI's ``prompt_tokens`` and ``completion_tokens``. Missing
    fields count 0."""
    if not isinstance(usage, Mapping):
        return 0, 0

    def n(k: str) -> int:
        v = usage.get(k)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return n("prompt_tokens"), n("completion_tokens")
    return (n("input_tokens") + n("cache_creation_input_tokens")
            + n("cache_read_input_tokens")), n("output_tokens")


#: The blank line ending a server-sent event: LF LF, CRLF CRLF or CR CR (WHATWG HTML,
#: "Server-sent events", event stream interpretation).
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def sse_events(buf: bytearray) -> list[bytes]:
    """The complete events at the start of ``buf``, each with the blank line that ends it
    (so joined they are the bytes read), removed from it; a partial event stays in ``buf``."""
    out = []
    pos = 0
    while (m := _EVENT_END.search(buf, pos)) is not None:
        out.append(bytes(buf[pos:m.end()]))
        pos = m.end()
    del buf[:pos]
    return out


def is_usage_only_event(event: bytes) -> bool:
    """Whether an SSE event is OpenAI's usage chunk of a streamed chat completion: ``data:``
    a JSON object with ``choices: []`` and a ``usage`` object (sent only when the request
    set ``stream_options.include_usage``)."""
    if not event.startswith(b"data:") or b'"usage"' not in event:
        return False
    try:
        obj = json.loads(event[5:])
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(obj.get("usage"), dict)


class UsageScanner:
    """Finds the provider's ``usage`` in a response as it is relayed, chunk by chunk.

    JSON bodies are collected (up to :data:`MAX_SCAN_BYTES`) and read at the end; SSE
    bodies are read event by event (Anthropic ``message_start`` gives the input tokens,
    ``message_delta`` the output tokens; an OpenAI chunk with ``usage`` gives both).
    ``gzip``/``deflate`` bodies are decoded on a copy; other encodings are not read.
    Never raises: what it cannot read it leaves at 0.

    Attributes:
        input_tokens / output_tokens: what was found so far, tokens.
        found: whether any usage was found.
    """

    def __init__(self, content_type: str, content_encoding: str) -> None:
        self.sse = content_type.startswith("text/event-stream")
        self.json = "json" in content_type
        enc = content_encoding.strip().lower()
        #: the body is not content-encoded (its bytes are the events themselves)
        self.plain = enc in ("", "identity")
        self._zip: Any = None
        self.active = (self.sse or self.json) and enc in ("", "identity", "gzip", "deflate")
        if enc == "gzip":
            self._zip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._zip = zlib.decompressobj()
        self._buf = bytearray()
        self.input_tokens = 0
        self.output_tokens = 0
        self.found = False

    def feed(self, chunk: bytes) -> None:
        """Take the next relayed bytes."""
        if not self.active:
            return
        try:
            data = self._zip.decompress(chunk) if self._zip is not None else chunk
        except zlib.error:
            self.active = False
            return
        self._buf += data
        if self.json:
            if len(self._buf) > MAX_SCAN_BYTES:
                self.active = False
            return
        for event in sse_events(self._buf):
            self._event(event)

    def close(self) -> None:
        """The body ended: read a JSON body."""
        if not self.active or not self.json:
            return
        try:
            obj = json.loads(bytes(self._buf))
        except ValueError:
            return
        if isinstance(obj, Mapping) and isinstance(obj.get("usage"), Mapping):
            self.input_tokens, self.output_tokens = usage_numbers(obj["usage"])
            self.found = True

    def _event(self, event: bytes) -> None:
        for line in event.replace(b"\r\n", b"\n").split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not payload or payload == b"[DONE]" or b"usage" not in payload:
                continue
            try:
                obj = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(obj, Mapping):
                continue
            usage = obj.get("usage")
            if obj.get("type") == "message_start" and isinstance(obj.get("message"), Mapping):
                usage = obj["message"].get("usage")
                i, o = usage_numbers(usage)
                self.input_tokens, self.output_tokens = i, max(self.output_tokens, o)
                self.found = True
            elif obj.get("type") == "message_delta" and isinstance(usage, Mapping):
                i, o = usage_numbers(usage)
                self.input_tokens = max(self.input_tokens, i)
                self.output_tokens = max(self.output_tokens, o)
                self.found = True
            elif isinstance(usage, Mapping):
                self.input_tokens, self.output_tokens = usage_numbers(usage)
                self.found = True


__all__ = ["HOP_BY_HOP", "MAX_SCAN_BYTES", "OWN_PREFIX", "UsageScanner", "client_headers",
           "error_body", "is_usage_only_event", "sse_events", "upstream_headers",
           "usage_numbers"]
