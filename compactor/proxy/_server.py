"""Serving the proxy: uvicorn, in the foreground (the CLI) or in a background thread
(tests, benchmarks, embedding), safe by default.

* It binds loopback unless told otherwise: a non-loopback address needs
  ``allow_remote=True`` *and* a shared token (:func:`check_bind`).
* Shutdown is graceful: on SIGINT/SIGTERM (foreground) or :meth:`ProxyServer.stop`, no new
  connection is accepted, requests in flight -- streams included -- run to their end
  (at most ``graceful_timeout_s`` seconds), then the proxy's client and ledger are closed
  (the ASGI lifespan shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import threading
import time
from typing import Any, Iterator

from .._errors import ConfigError
from .._optional import require
from ._app import Proxy

#: Default listen address.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
#: How long a shutdown waits for requests in flight, seconds.
DEFAULT_GRACEFUL_TIMEOUT_S = 30.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` for IPv6; ``PORT`` alone means 127.0.0.1) ->
    ``(host, port)``; port 0 picks a free one.

    Raises:
        ConfigError: not that shape, or the port is not 0-65535 (``field="listen"``).
    """
    t = text.strip()
    host, port = DEFAULT_HOST, t
    if t.startswith("["):
        end = t.find("]")
        if end < 0 or t[end + 1:end + 2] != ":":
            port = ""
        else:
            host, port = t[1:end], t[end + 2:]
    elif ":" in t:
        host, port = t.rsplit(":", 1)
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ConfigError(f"--listen {text!r} is not HOST:PORT; fix: e.g. 127.0.0.1:8787",
                          field="listen")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool, token: str | None) -> None:
    """Refuse an unsafe bind: beyond loopback the proxy would serve anyone who can reach
    the address, with the operator's upstream; that needs ``allow_remote`` and a token.

    Raises:
        ConfigError: a non-loopback ``host`` without ``allow_remote`` or without a token.
    """
    if is_loopback(host):
        return
    if not allow_remote:
        raise ConfigError(f"--listen {host}: not a loopback address; fix: listen on "
                          "127.0.0.1, or pass --allow-remote with --token", field="listen")
    if not token:
        raise ConfigError(f"--listen {host} with --allow-remote needs a shared token; fix: "
                          "pass --token T (callers send it as x-compactor-token)",
                          field="token")


def _server_class() -> Any:
    uvicorn = require("uvicorn", extra="proxy", what="compactor proxy")

    class _Server(uvicorn.Server):  # type: ignore[misc,name-defined]
        """uvicorn's server, with signal handling that ends the serve loop gracefully and
        returns (uvicorn's own re-raises the signal after shutdown, killing the process
        with it)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def handle(sig: int, frame: Any) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True

            sigs = (signal.SIGINT, signal.SIGTERM)
            old = {s: signal.signal(s, handle) for s in sigs}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

    return _Server


class ProxyServer:
    """A :class:`Proxy` served by uvicorn on ``host:port``.

    Args:
        proxy: the proxy.
        host / port: where to listen (port 0: a free port, see :attr:`port`).
        allow_remote: permit a non-loopback ``host`` (needs ``proxy.settings.token``).
        graceful_timeout_s: how long a shutdown waits for requests in flight, seconds.
        log_level: uvicorn's log level (``"warning"``: problems only; no access log).

    Raises:
        ConfigError: an unsafe bind (:func:`check_bind`).
        MissingExtraError: uvicorn is not installed (the ``proxy`` extra).
    """

    def __init__(self, proxy: Proxy, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 allow_remote: bool = False,
                 graceful_timeout_s: float = DEFAULT_GRACEFUL_TIMEOUT_S,
                 log_level: str = "warning") -> None:
        check_bind(host, allow_remote=allow_remote, token=proxy.settings.token)
        uvicorn = require("uvicorn", extra="proxy", what="compactor proxy")
        self.proxy = proxy
        self.host = host
        self.graceful_timeout_s = graceful_timeout_s
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(proxy.app, lifespan="on", log_level=log_level,
                                access_log=False, timeout_graceful_shutdown=graceful_timeout_s,
                                proxy_headers=False, server_header=False)
        self.server = _server_class()(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (IPv6 hosts bracketed)."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}"

    def serve(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (or :meth:`stop` from another
        thread), then shut down gracefully."""
        asyncio.run(self.server.serve(sockets=[self._sock]))

    def start(self, timeout_s: float = 15.0) -> "ProxyServer":
        """Serve in a daemon thread; returns once it accepts connections.

        Raises:
            RuntimeError: not started within ``timeout_s`` seconds.
        """
        self._thread = threading.Thread(target=self.serve, name="compactor-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not start on {self.url} within {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Shut down gracefully: stop accepting, let requests in flight finish, close.
        Waits for the server thread (at most ``timeout_s``, default the graceful timeout
        plus 10 s)."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.graceful_timeout_s + 10 if timeout_s is None else timeout_s)

    def __enter__(self) -> "ProxyServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    family, _, _, _, addr = infos[0]
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it each answer's body waits for the client's delayed ACK (~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


__all__ = ["DEFAULT_GRACEFUL_TIMEOUT_S", "DEFAULT_HOST", "DEFAULT_PORT", "ProxyServer",
           "check_bind", "is_loopback", "parse_listen"]
