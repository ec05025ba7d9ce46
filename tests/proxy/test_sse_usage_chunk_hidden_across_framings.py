"""The proxy leaves out the usage chunk it asked for on the client's behalf whatever the
upstream's SSE framing (LF, CRLF or CR blank lines, events split across network writes),
relays every other byte as sent, and counts the usage; events are split by
``sse_events`` exactly as written."""

from __future__ import annotations

import json

import httpx
import pytest

from compactor.proxy._wire import is_usage_only_event, sse_events

from httpserve import LocalHTTPServer
from proxy_helpers import QuietHandler, served, settled_totals

pytestmark = pytest.mark.timeout(60)

USAGE = {"prompt_tokens": 31, "completion_tokens": 7, "total_tokens": 38}


def _chunks(sep: bytes) -> tuple[list[bytes], bytes]:
    """An OpenAI-shaped streamed chat answer (3 content chunks, the usage chunk, [DONE])
    with ``sep`` as the blank line; returns its events and the events a client that did
    not ask for usage must receive (all but the usage chunk), joined."""
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [b"data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": w},
                                      "finish_reason": None}], "usage": None}).encode() + sep
              for w in ("one ", "two ", "three")]
    usage = b"data: " + json.dumps({**base, "choices": [], "usage": USAGE}).encode() + sep
    done = b"data: [DONE]" + sep
    return [*events, usage, done], b"".join([*events, done])


class Upstream(LocalHTTPServer):
    """Answers every POST with the events of ``_chunks(sep)``, written in pieces of
    ``piece`` bytes (so events are split across writes); records the request bodies."""

    def __init__(self, sep: bytes, piece: int) -> None:
        self.bodies: list[dict] = []
        events, _ = _chunks(sep)
        data = b"".join(events)
        owner = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                owner.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i in range(0, len(data), piece):
                    part = data[i:i + piece]
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        super().__init__(Handler)


@pytest.mark.parametrize("sep", [b"\n\n", b"\r\n\r\n", b"\r\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("piece", [7, 4096], ids=["split", "whole"])
def test_usage_chunk_left_out_and_counted(sep: bytes, piece: int) -> None:
    """A streamed chat call without include_usage: the upstream is asked for usage, the
    client receives exactly the other events' bytes, the proxy counts 31/7 tokens."""
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "count"}]}
    with Upstream(sep, piece) as up, served(up.url) as proxy:
        with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body,
                          timeout=20, headers={"authorization": "Bearer k"},
                          trust_env=False) as r:
            got = b"".join(r.iter_raw())
        totals = settled_totals(proxy.proxy)
    assert up.bodies[-1]["stream_options"] == {"include_usage": True}
    assert got == _chunks(sep)[1]
    assert (totals["input_tokens"], totals["output_tokens"]) == (31, 7)


@pytest.mark.parametrize("sep", [b"\n\n", b"\r\n\r\n", b"\r\r"], ids=["lf", "crlf", "cr"])
def test_sse_events_splits_as_written_and_keeps_a_partial_event(sep: bytes) -> None:
    """Fed byte by byte, sse_events returns each event with its blank line, in order,
    holding back a partial one; exactly one of them is the usage chunk."""
    events, _ = _chunks(sep)
    buf, out = bytearray(), []
    for b in b"".join(events) + b"data: {\"partial\"":
        buf.append(b)
        out.extend(sse_events(buf))
    assert out == events and bytes(buf) == b"data: {\"partial\""
    assert [is_usage_only_event(e) for e in out] == [False, False, False, True, False]
