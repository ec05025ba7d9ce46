"""Helpers of the proxy tests (``from proxy_helpers import ...``): the proxy CLI in a
child process (with a readiness deadline), the proxy in a thread, and a relay that
records the raw bytes an upstream receives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import httpx

from httpserve import LocalHTTPServer
from procio import LineReader

ROOT = Path(__file__).resolve().parents[2]

#: Runs ``compactor ARGS`` with the proxy command registered the way the lead will
#: register it (an entry of compactor.cli._EXTENSIONS), through compactor.cli.main.
CLI = ("import sys, compactor.cli as c; "
       "c._EXTENSIONS.append(('compactor.proxy._cli', 'add_proxy_commands')) "
       "if ('compactor.proxy._cli', 'add_proxy_commands') not in c._EXTENSIONS else None; "
       "sys.exit(c.main(sys.argv[1:]))")


def cli_command(*args: str) -> list[str]:
    """The argv of ``compactor ARGS`` in a child Python."""
    return [sys.executable, "-c", CLI, *args]


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """``compactor ARGS`` to completion (output captured)."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)


@dataclass
class ProxyProcess:
    """A ``compactor proxy`` child process: its URL, its output lines so far."""

    proc: subprocess.Popen[str]
    url: str
    out: LineReader
    err_path: Path
    lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the proxy and wait for it to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the proxy did not exit within {timeout} s of signal {sig}")

    def drain(self, timeout: float = 10) -> list[str]:
        """Every stdout line, once the process has exited (the first included)."""
        while True:
            line = self.out.readline(timeout=timeout)
            if not line:
                return self.lines
            self.lines.append(line)

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")


def start_proxy(tmp: Path, *args: str, ready_s: float = 60) -> ProxyProcess:
    """Start ``compactor proxy --listen 127.0.0.1:0 ARGS`` and wait (at most ``ready_s``
    seconds) for its ``listening on URL`` line and a healthy ``/compactor/health``."""
    err_path = tmp / f"proxy-stderr-{len(list(tmp.glob('proxy-stderr-*')))}.log"
    err = open(err_path, "w", encoding="utf-8")
    proc = subprocess.Popen(cli_command("proxy", "--listen", "127.0.0.1:0", *args),
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp,
                            start_new_session=True)
    err.close()
    out = LineReader(proc.stdout)  # type: ignore[arg-type]
    line = out.readline(timeout=ready_s)
    if "listening on " not in line:
        proc.kill()
        raise AssertionError(f"the proxy did not start: {line!r}; stderr: "
                             f"{err_path.read_text()[-2000:]}")
    url = line.split("listening on ", 1)[1].split()[0]
    r = httpx.get(f"{url}/compactor/health", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    return ProxyProcess(proc, url, out, err_path, [line])


class QuietHandler(BaseHTTPRequestHandler):
    """An HTTP/1.1 request handler that logs nothing and sends small writes at once
    (no Nagle delay)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a: Any) -> None:
        return None


@dataclass
class Received:
    """One request as the relay received it: path (with query), headers, raw body."""

    path: str
    headers: dict[str, str]
    body: bytes


class RecordingRelay(LocalHTTPServer):
    """A real HTTP server on 127.0.0.1 that records the raw bytes of every request and
    relays it to ``target`` (e.g. a LoopbackServer), answering with the target's
    status, headers and body."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.client = httpx.Client(timeout=30, trust_env=False)
        relay = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with relay._lock:
                    relay.received.append(Received(self.path, headers, body))
                fwd = {k: v for k, v in headers.items()
                       if k not in ("host", "content-length", "connection")}
                r = relay.client.post(relay.target + self.path, content=body, headers=fwd)
                data = r.content
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "content-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self.client.close()


@contextmanager
def served(upstream: str, *, compactor: Any = None, sink: Any = None, **settings: Any) -> Iterator[Any]:
    """A :class:`compactor.proxy.ProxyServer` in a thread of this process, upstreams on
    ``upstream`` (Anthropic) and ``upstream/v1`` (OpenAI); yields it (``.url``,
    ``.proxy``), stopped gracefully at the end."""
    from compactor.proxy import Proxy, ProxyServer, ProxySettings

    s = ProxySettings(anthropic_upstream=upstream, openai_upstream=upstream + "/v1", **settings)
    server = ProxyServer(Proxy(s, compactor=compactor, sink=sink), "127.0.0.1", 0,
                         graceful_timeout_s=10)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def settled_totals(proxy: Any, deadline_s: float = 5.0) -> dict[str, Any]:
    """The proxy's status totals once the last relayed answer has been accounted for (the
    relay records usage after its last byte went out, so a client can finish reading
    first): polled until they stop changing for 0.1 s, at most ``deadline_s`` seconds."""
    import time

    end = time.monotonic() + deadline_s
    last = proxy.status()["totals"]
    while time.monotonic() < end:
        time.sleep(0.1)
        now = proxy.status()["totals"]
        if now == last and now["input_tokens"]:
            return now
        last = now
    return last

