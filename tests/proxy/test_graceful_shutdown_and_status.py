"""``compactor proxy`` as a process: SIGTERM finishes the requests in flight (a stream
included) before it exits 0 and refuses new connections; ``--status`` reads a running
proxy's sessions and counters; ``--status`` with no proxy there is one line, exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from proxy_helpers import run_cli
from compactor.testing import Fault, LoopbackServer

BODY = {"model": "claude-sonnet-4-6", "max_tokens": 32, "stream": True,
        "messages": [{"role": "user", "content": "a slow answer please"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_finishes_a_stream_in_flight(tmp_path: Path, proxy_process: Any) -> None:
    """A stream whose upstream answers 2 s late is in flight when the proxy gets SIGTERM:
    it is delivered whole (ending in message_stop), and the proxy then exits 0."""
    with LoopbackServer() as up:
        p = proxy_process("--anthropic-upstream", up.url, "--store", str(tmp_path / "s"),
                          "--ledger", str(tmp_path / "l.jsonl"))
        up.enqueue(Fault.latency(2.0))
        got: dict[str, Any] = {}

        def stream() -> None:
            try:
                with httpx.stream("POST", p.url + "/v1/messages", json=BODY, timeout=30,
                                  headers={"x-api-key": "k-graceful"}, trust_env=False) as r:
                    got["status"] = r.status_code
                    got["body"] = b"".join(r.iter_raw())
            except Exception as e:  # noqa: BLE001 -- reported by the asserts below
                got["error"] = repr(e)

        t = threading.Thread(target=stream, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while not up.requests:
            assert time.monotonic() < deadline, "the request never reached the upstream"
            time.sleep(0.02)
        p.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        port = int(p.url.rsplit(":", 1)[1])
        with socket.socket() as s:             # no new connection once shutting down
            s.settimeout(5)
            assert s.connect_ex(("127.0.0.1", port)) != 0
        t.join(30)
        assert p.stop() == 0
    assert "error" not in got, got
    assert got["status"] == 200
    assert got["body"].rstrip().split(b"\n\n")[-1].startswith(b"event: message_stop")
    assert any("stopped" in line for line in p.drain())


def test_status_lists_sessions(tmp_path: Path, proxy_process: Any) -> None:
    """``compactor proxy --status --json`` shows the running proxy's sessions, calls and
    the provider's token counts; the table form names the session."""
    with LoopbackServer() as up:
        p = proxy_process("--anthropic-upstream", up.url, "--store", str(tmp_path / "s"),
                          "--ledger", str(tmp_path / "l.jsonl"))
        for _ in range(2):
            r = httpx.post(p.url + "/v1/messages", json={**BODY, "stream": False},
                           headers={"x-api-key": "k-status", "x-compactor-session": "demo",
                                    "x-compactor-agent": "planner"}, trust_env=False)
            assert r.status_code == 200
        listen = p.url.removeprefix("http://")
        out = run_cli("proxy", "--status", "--json", "--listen", listen)
        table = run_cli("proxy", "--status", "--listen", listen,
                        env={**os.environ, "COLUMNS": "250"})
        p.stop()
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [s] = doc["sessions"]
    assert s["session_id"].startswith("demo~") and s["agent_id"] == "planner"
    assert s["calls"] == 2 and s["input_tokens"] > 0 and s["output_tokens"] > 0
    assert doc["requests"] == 2 and doc["broken_streams"] == 0
    assert table.returncode == 0 and "demo~" in table.stdout and "planner" in table.stdout


def test_status_without_a_proxy_is_one_line() -> None:
    """``--status`` where nothing listens: exit 2, one line naming the address and the fix."""
    r = run_cli("proxy", "--status", "--listen", f"127.0.0.1:{_free_port()}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no proxy answers" in lines[0] and "fix:" in lines[0]
