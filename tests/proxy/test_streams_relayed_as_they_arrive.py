"""Streams go through the proxy event by event, as the upstream sends them (never held
back until the answer is whole), and the provider's usage is read on the way, from
plain or gzip-encoded bodies, without changing a byte."""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

import httpx

from proxy_helpers import QuietHandler, served
from compactor.proxy._wire import UsageScanner

EVENTS = 5
GAP_S = 0.4


class SlowSSE:
    """An upstream that answers every POST with EVENTS SSE events, GAP_S seconds apart,
    recording when each was written."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.broken = False
        owner = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for i in range(EVENTS):
                        data = f"event: ping\ndata: {{\"n\": {i}}}\n\n".encode()
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                        owner.sent.append(time.monotonic())
                        time.sleep(GAP_S)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:           # the reader went away
                    owner.broken = True
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def test_each_event_reaches_the_client_when_the_upstream_sends_it() -> None:
    """Every event arrives at the client within 0.25 s of the upstream writing it (the
    events are 0.4 s apart), so the first is read long before the last is sent."""
    up = SlowSSE()
    body = {"model": "m", "max_tokens": 8, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    try:
        with served(up.url) as proxy:
            arrived: list[float] = []
            got = b""
            with httpx.stream("POST", proxy.url + "/v1/messages", json=body, timeout=20,
                              headers={"x-api-key": "k"}, trust_env=False) as r:
                for chunk in r.iter_raw():
                    got += chunk
                    while got.count(b"\n\n") > len(arrived):
                        arrived.append(time.monotonic())
    finally:
        up.httpd.shutdown()
    assert len(arrived) == len(up.sent) == EVENTS
    assert arrived[0] < up.sent[-1] - GAP_S * (EVENTS - 2)
    assert all(a - s < 0.25 for a, s in zip(arrived, up.sent)), \
        [round(a - s, 3) for a, s in zip(arrived, up.sent)]
    assert got == b"".join(f"event: ping\ndata: {{\"n\": {i}}}\n\n".encode()
                           for i in range(EVENTS))


def test_client_that_goes_away_closes_the_upstream_answer() -> None:
    """A client that stops reading after the first event and closes: the proxy closes the
    upstream answer too (the upstream's next writes fail; it does not stream to nobody)
    and counts a client disconnect; nothing stays in flight."""
    up = SlowSSE()
    body = {"model": "m", "max_tokens": 8, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    try:
        with served(up.url) as proxy:
            with httpx.stream("POST", proxy.url + "/v1/messages", json=body, timeout=20,
                              headers={"x-api-key": "k"}, trust_env=False) as r:
                next(r.iter_raw())
            deadline = time.monotonic() + EVENTS * GAP_S + 5
            while not up.broken and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = proxy.proxy.stats
            assert up.broken and len(up.sent) < EVENTS
            assert stats.client_disconnects == 1 and stats.in_flight == 0
    finally:
        up.httpd.shutdown()


def test_usage_read_from_sse_and_gzip_json() -> None:
    """The scanner finds Anthropic stream usage (message_start input, message_delta
    output), OpenAI's final-chunk usage, and usage inside a gzip JSON body fed in pieces."""
    s = UsageScanner("text/event-stream; charset=utf-8", "")
    for part in (b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
                 b'{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}\n',
                 b'\nevent: message_delta\ndata: {"type":"message_delta","usage":'
                 b'{"output_tokens":42}}\n\n'):
        s.feed(part)
    assert (s.input_tokens, s.output_tokens, s.found) == (15, 42, True)
    o = UsageScanner("text/event-stream", "")
    o.feed(b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
           b"data: [DONE]\n\n")
    assert (o.input_tokens, o.output_tokens) == (7, 3)
    raw = gzip.compress(json.dumps({"type": "message", "usage": {
        "input_tokens": 100, "output_tokens": 9}}).encode())
    g = UsageScanner("application/json", "gzip")
    for i in range(0, len(raw), 7):
        g.feed(raw[i:i + 7])
    g.close()
    assert (g.input_tokens, g.output_tokens) == (100, 9)
    b = UsageScanner("application/json", "br")          # not decoded: left at 0
    b.feed(b"\x00\x01")
    b.close()
    assert not b.found
