"""The proxy is safe by default: loopback only unless told otherwise (and then only with a
token), the token checked on every call, only the configured upstreams reached (no open
proxy), bodies over the limit refused with 413 before anything goes upstream, and a health
endpoint."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from proxy_helpers import run_cli, served
from compactor import ConfigError
from compactor.proxy import Proxy, ProxyServer, ProxySettings, check_bind, parse_listen
from compactor.testing import LoopbackServer

BODY = {"model": "claude-sonnet-4-6", "max_tokens": 32,
        "messages": [{"role": "user", "content": "hello"}]}
TOKEN = "proxy-shared-token-0123456789"


def post(url: str, path: str, body: Any = BODY, **headers: str) -> httpx.Response:
    return httpx.post(url + path, json=body, headers={"x-api-key": "k-1", **headers},
                      timeout=20, trust_env=False)


@pytest.mark.parametrize("args,word", [
    (["--listen", "0.0.0.0:0"], "--allow-remote"),
    (["--listen", "0.0.0.0:0", "--allow-remote"], "--token"),
    (["--listen", "127.0.0.1:0", "--token", "short"], "16 characters"),
    (["--listen", "nonsense"], "HOST:PORT"),
    (["--anthropic-upstream", "ftp://example.com"], "http(s) URL"),
])
def test_unsafe_or_bad_start_is_one_line_exit_2(tmp_path: Any, args: list[str], word: str) -> None:
    """A non-loopback bind without --allow-remote, --allow-remote without a token, a short
    token, a bad --listen or upstream: exit 2 with one line on stderr naming the fix, and
    nothing served."""
    r = run_cli("proxy", *args, "--store", str(tmp_path / "s"), "--ledger",
                str(tmp_path / "l.jsonl"), timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compactor: error:"), r.stderr
    assert word in lines[0] and "fix:" in lines[0]
    assert "listening" not in r.stdout


def test_bind_rules() -> None:
    """Loopback binds need nothing; any other address needs allow_remote and a token."""
    check_bind("127.0.0.1", allow_remote=False, token=None)
    check_bind("::1", allow_remote=False, token=None)
    check_bind("localhost", allow_remote=False, token=None)
    with pytest.raises(ConfigError):
        check_bind("0.0.0.0", allow_remote=False, token=TOKEN)
    with pytest.raises(ConfigError):
        check_bind("192.168.1.5", allow_remote=True, token=None)
    check_bind("0.0.0.0", allow_remote=True, token=TOKEN)
    assert parse_listen("127.0.0.1:8787") == ("127.0.0.1", 8787)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("9100") == ("127.0.0.1", 9100)
    with pytest.raises(ConfigError):
        ProxyServer(Proxy(ProxySettings()), "0.0.0.0", 0)


def test_token_checked_and_never_forwarded() -> None:
    """With a token, a call without it (or with a wrong one) is 401 and goes nowhere; with
    it the call is served and the token header is not forwarded upstream."""
    with LoopbackServer() as up, served(up.url, token=TOKEN) as proxy:
        assert post(proxy.url, "/v1/messages").status_code == 401
        assert post(proxy.url, "/v1/messages", **{"x-compactor-token": "wrong"}).status_code == 401
        assert httpx.get(proxy.url + "/compactor/status", trust_env=False).status_code == 401
        assert up.requests == []
        r = post(proxy.url, "/v1/messages", **{"x-compactor-token": TOKEN})
        assert r.status_code == 200
        assert [q.path for q in up.requests] == ["/v1/messages"]
        assert "x-compactor-token" not in up.requests[0].headers
        assert httpx.get(proxy.url + "/compactor/health", trust_env=False).json()["status"] == "ok"


def test_only_configured_upstreams() -> None:
    """Unknown paths are 404 without any upstream call; a Host header naming another site
    changes nothing (the configured upstream gets the call); an API with no upstream
    configured is 404."""
    with LoopbackServer() as up, served(up.url) as proxy:
        for method, path in [("GET", "/v1/models"), ("POST", "/v1/files"),
                             ("POST", "/v1/responses"), ("GET", "/v1/messages")]:
            r = httpx.request(method, proxy.url + path, json=BODY, trust_env=False)
            assert r.status_code in (404, 405), path
        assert up.requests == []
        r = post(proxy.url, "/v1/messages", host="evil.example.com")
        assert r.status_code == 200 and len(up.requests) == 1
    with LoopbackServer() as up, served(up.url) as proxy:
        proxy.proxy.settings = ProxySettings(anthropic_upstream=up.url, openai_upstream=None)
        r = post(proxy.url, "/v1/chat/completions")
        assert r.status_code == 404 and up.requests == []


def test_body_over_the_limit_is_413() -> None:
    """A body over max_body_bytes is 413 (declared length or streamed without one), and
    nothing goes upstream; one under it is served."""
    with LoopbackServer() as up, served(up.url, max_body_bytes=4096) as proxy:
        big = {**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
        r = post(proxy.url, "/v1/messages", big)
        assert r.status_code == 413
        assert json.loads(r.content)["error"]["type"] == "request_too_large"

        def chunks() -> Any:
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        r = httpx.post(proxy.url + "/v1/messages", content=chunks(), trust_env=False,
                       headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert up.requests == []
        assert post(proxy.url, "/v1/messages").status_code == 200


def test_count_tokens_passes_through_unchanged() -> None:
    """count_tokens goes upstream as sent (never compacted) and its answer comes back."""
    with LoopbackServer() as up, served(up.url) as proxy:
        direct = post(up.url, "/v1/messages/count_tokens", {"model": "m", **{"messages": BODY["messages"]}})
        via = post(proxy.url, "/v1/messages/count_tokens", {"model": "m", **{"messages": BODY["messages"]}})
        assert via.status_code == direct.status_code == 200
        assert via.json() == direct.json()
        assert up.requests[0].json == up.requests[1].json
