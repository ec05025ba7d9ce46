"""The proxy's ASGI application (starlette): compaction in front of any agent.

Routes (see ``docs/proxy.md``):

* ``POST /v1/messages`` -- Anthropic Messages, JSON or SSE: the history is compacted, then
  the request goes to the Anthropic upstream and the answer comes back byte for byte;
* ``POST /v1/messages/count_tokens`` -- passed through unchanged;
* ``POST /v1/chat/completions`` -- OpenAI chat completions, JSON or SSE, likewise;
* ``GET /compactor/health`` -- ``{"status": "ok"}``;
* ``GET /compactor/status`` -- sessions, tokens in/out, compactions (``compactor proxy
  --status`` reads it).

What it promises:

* The answer is relayed as the upstream sent it: status, headers (``retry-after``
  included; hop-by-hop ones excepted) and body bytes, event by event as they arrive (never
  buffered whole; back-pressure from the client reaches the upstream read). A body the
  upstream cuts short is cut short to the client at the same byte. An upstream that cannot
  be reached or resets the connection before answering is a ``502`` (a timeout ``504``)
  with a provider-shaped error body and ``x-compactor-upstream-error`` naming it: an ASGI
  server cannot reset a connection on an application's behalf. No call is retried.
* Credentials (``x-api-key``, ``authorization``, ``api-key``) go upstream untouched and are
  never logged, stored or recorded: sessions are keyed by a digest of them (``_identity``).
* A request the compactor does not change is forwarded as the very bytes received. A
  compaction that fails for any reason forwards the request unchanged (a
  ``proxy_fallback`` ledger record says why); only a hard budget refuses a call (400).
* ``shadow=True``: every request is forwarded unchanged; a ``proxy_shadow`` ledger record
  says what compaction would have done (``MessageCompactor.dry_run``: no effects).
* Only the configured upstreams are reached (no open proxy); bodies over
  ``max_body_bytes`` get 413; with a ``token`` every request but the health check needs
  ``x-compactor-token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Mapping

import httpx

from .._compactor import MessageCompactor
from .._errors import ConfigError
from .._format import Format, strip_metadata, with_stream_usage
from .._optional import require
from .._redact import redact
from .._sink import LedgerSink, NullSink
from ._identity import TOKEN_HEADER, agent_for, session_id_for
from ._sinks import QueuedSink
from ._summarizer import ANTHROPIC_COPY, Caller, UpstreamSummarizer, caller_context
from ._wire import (UsageScanner, client_headers, error_body, is_usage_only_event,
                    sse_events, upstream_headers)

log = logging.getLogger("compactor.proxy")

#: The Anthropic API (``ANTHROPIC_BASE_URL`` convention: no ``/v1``).
DEFAULT_ANTHROPIC_UPSTREAM = "https://api.anthropic.com"
#: The OpenAI API (``OPENAI_BASE_URL`` convention: with ``/v1``).
DEFAULT_OPENAI_UPSTREAM = "https://api.openai.com/v1"
#: Largest request body accepted, bytes (32 MiB: the Messages API's own request limit).
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: Paths of the routes.
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
CHAT = "/v1/chat/completions"
HEALTH = "/compactor/health"
STATUS = "/compactor/status"
#: Request bodies larger than this (bytes) are parsed in a thread, off the event loop.
OFF_LOOP_BYTES = 256 * 1024
#: Compacted requests estimated above this many tokens are encoded in a thread.
OFF_LOOP_TOKENS = 64_000
#: Sessions kept in the status view (the least recently seen are dropped beyond it).
MAX_TRACKED_SESSIONS = 4096
#: Response header naming why the proxy answered instead of the upstream.
UPSTREAM_ERROR_HEADER = "x-compactor-upstream-error"


def check_upstream(url: str | None, name: str) -> str | None:
    """``url`` without a trailing ``/`` when it is an http(s) URL (None stays None).

    Raises:
        ConfigError: not an http(s) URL (``field=name``).
    """
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or \
            len(url.split("://", 1)[1].strip("/")) == 0:
        raise ConfigError(f"{name} {url!r} is not an http(s) URL; fix: e.g. "
                          f"{DEFAULT_ANTHROPIC_UPSTREAM if 'anthropic' in name else DEFAULT_OPENAI_UPSTREAM}",
                          field=name)
    return url.rstrip("/")


@dataclass(frozen=True)
class ProxySettings:
    """How the proxy behaves.

    Attributes:
        anthropic_upstream: base URL of the Messages API (no ``/v1``), or None to refuse
            Anthropic routes.
        openai_upstream: base URL of the chat completions API (with ``/v1``), or None.
        shadow: forward every request unchanged and record what compaction would do.
        token: the shared token callers must send as ``x-compactor-token`` (None: none).
        max_body_bytes: largest request body, bytes (larger: 413).
        summarizer: ``"offline"`` (the compactor's own) or ``"upstream"`` (the caller's
            upstream, credentials and a cheap model: :class:`UpstreamSummarizer`).
        summary_models: summary model per format for ``"upstream"`` (None: defaults).
        default_agent: the agent of calls without ``x-compactor-agent``.
        budgets: apply the budget profiles per agent (alerts in the ledger).
        connect_timeout_s / read_timeout_s: upstream timeouts, seconds (the read timeout
            bounds the wait for each chunk of an answer, not the whole answer).
    """

    anthropic_upstream: str | None = DEFAULT_ANTHROPIC_UPSTREAM
    openai_upstream: str | None = DEFAULT_OPENAI_UPSTREAM
    shadow: bool = False
    token: str | None = field(default=None, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    summarizer: str = "offline"
    summary_models: Mapping[Format, str] | None = None
    default_agent: str | None = None
    budgets: bool = False
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "anthropic_upstream",
                           check_upstream(self.anthropic_upstream, "anthropic_upstream"))
        object.__setattr__(self, "openai_upstream",
                           check_upstream(self.openai_upstream, "openai_upstream"))
        if self.summarizer not in ("offline", "upstream"):
            raise ConfigError(f"summarizer must be 'offline' or 'upstream', got "
                              f"{self.summarizer!r}", field="summarizer")
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be a whole number >= 1024 bytes",
                              field="max_body_bytes")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the token must be at least 16 characters; fix: e.g. "
                              "python -c 'import secrets; print(secrets.token_urlsafe())'",
                              field="token")


@dataclass
class SessionStats:
    """What the proxy saw of one session (for ``/compactor/status``)."""

    session_id: str
    agent_id: str | None
    fmt: str
    calls: int = 0
    compactions: int = 0
    fallbacks: int = 0
    would_compact: int = 0
    tokens_before: int = 0       # our estimate of the last request as received
    tokens_sent: int = 0         # our estimate of the last request as forwarded
    input_tokens: int = 0        # provider-reported, summed
    output_tokens: int = 0
    last_seen: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "agent_id": self.agent_id, "format": self.fmt,
                "calls": self.calls, "compactions": self.compactions,
                "fallbacks": self.fallbacks, "would_compact": self.would_compact,
                "tokens_before": self.tokens_before, "tokens_sent": self.tokens_sent,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "idle_s": round(time.monotonic() - self.last_seen, 3)}


@dataclass
class ProxyStats:
    """Counters of the whole proxy (event-loop only; no locking needed)."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    in_flight: int = 0
    compacted_requests: int = 0
    fallbacks: int = 0
    upstream_errors: int = 0
    broken_streams: int = 0
    client_disconnects: int = 0
    refused: int = 0
    sessions: dict[str, SessionStats] = field(default_factory=dict)

    def session(self, sid: str, agent: str | None, fmt: Format) -> SessionStats:
        """The stats of a session (new ones added; beyond :data:`MAX_TRACKED_SESSIONS` the
        least recently seen tenth is dropped from the view)."""
        s = self.sessions.get(sid)
        if s is None:
            if len(self.sessions) >= MAX_TRACKED_SESSIONS:
                old = sorted(self.sessions.values(), key=lambda x: x.last_seen)
                for x in old[:max(1, MAX_TRACKED_SESSIONS // 10)]:
                    del self.sessions[x.session_id]
            s = self.sessions[sid] = SessionStats(sid, agent, fmt.value)
        s.last_seen = time.monotonic()
        return s


class Proxy:
    """The proxy: its settings, compactor, HTTP client, counters and ASGI app (``.app``).

    Args:
        settings: the :class:`ProxySettings`.
        compactor: the :class:`MessageCompactor` (default: offline, no store). With
            ``settings.summarizer == "upstream"`` its summarizer is replaced by an
            :class:`UpstreamSummarizer` on this proxy's client.
        sink: the ledger (proxy records, budget alerts); written from a thread.
        budget_config: the budget profiles (``compactor.budgets.BudgetConfig``) used when
            ``settings.budgets`` (default: the shipped ones).
        transport: an httpx transport for the upstream client (tests).

    Raises:
        MissingExtraError: starlette is not installed (the ``proxy`` extra).
    """

    def __init__(self, settings: ProxySettings | None = None, *,
                 compactor: MessageCompactor | None = None, sink: LedgerSink | None = None,
                 budget_config: Any = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings or ProxySettings()
        self.compactor = compactor or MessageCompactor()
        self.sink: LedgerSink = QueuedSink(sink) if sink is not None else NullSink()
        self.stats = ProxyStats()
        timeout = httpx.Timeout(self.settings.read_timeout_s,
                                connect=self.settings.connect_timeout_s)
        self.client = httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        if self.settings.summarizer == "upstream":
            self.compactor.summarizer = UpstreamSummarizer(
                self.client, models=self.settings.summary_models, sink=self.compactor.sink)
        self.monitor: Any = None
        self._invocations: dict[tuple[str | None, str], Any] = {}
        if self.settings.budgets:
            from ..budgets import BudgetMonitor
            self.monitor = BudgetMonitor(budget_config, sink=self.sink,
                                         windows=self.compactor.windows)
        self.app = self._build_app()

    # ------------------------------------------------------------------ the app
    def _build_app(self) -> Any:
        require("starlette", extra="proxy", what="compactor proxy")
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def messages(request: Any) -> Any:
            return await self._compacting(request, Format.ANTHROPIC, MESSAGES)

        async def count_tokens(request: Any) -> Any:
            return await self._passthrough(request, Format.ANTHROPIC, COUNT_TOKENS)

        async def chat(request: Any) -> Any:
            return await self._compacting(request, Format.OPENAI, "/chat/completions")

        async def health(request: Any) -> Any:
            return _json(200, {"status": "ok", "shadow": self.settings.shadow})

        async def status(request: Any) -> Any:
            denied = self._denied(request, Format.ANTHROPIC)
            return denied or _json(200, self.status())

        async def not_found(request: Any) -> Any:
            return _plain(404, error_body(Format.ANTHROPIC, 404, f"the compactor proxy has "
                                          f"no route for {request.method} {request.url.path}"))

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            yield
            await self.aclose()

        routes = [Route(MESSAGES, messages, methods=["POST"]),
                  Route(COUNT_TOKENS, count_tokens, methods=["POST"]),
                  Route(CHAT, chat, methods=["POST"]),
                  Route(HEALTH, health, methods=["GET"]),
                  Route(STATUS, status, methods=["GET"]),
                  Route("/{path:path}", not_found,
                        methods=["GET", "POST", "PUT", "DELETE", "PATCH"])]
        return Starlette(routes=routes, lifespan=lifespan)

    async def aclose(self) -> None:
        """Close the upstream client, write the budgets' usage records, flush the ledger."""
        await self.client.aclose()
        for inv in self._invocations.values():
            inv.finish()
        self._invocations.clear()
        if isinstance(self.sink, QueuedSink):
            await asyncio.to_thread(self.sink.close)

    def status(self) -> dict[str, Any]:
        """The ``/compactor/status`` document: the proxy's counters and every session's."""
        s = self.stats
        sessions = sorted(s.sessions.values(), key=lambda x: -x.last_seen)
        return {
            "shadow": self.settings.shadow,
            "upstreams": {"anthropic": self.settings.anthropic_upstream,
                          "openai": self.settings.openai_upstream},
            "uptime_s": round(time.monotonic() - s.started, 3),
            "requests": s.requests, "in_flight": s.in_flight,
            "compacted_requests": s.compacted_requests, "fallbacks": s.fallbacks,
            "upstream_errors": s.upstream_errors, "broken_streams": s.broken_streams,
            "client_disconnects": s.client_disconnects, "refused": s.refused,
            "sessions": [x.as_json() for x in sessions],
            "totals": {"sessions": len(sessions),
                       "compactions": sum(x.compactions for x in sessions),
                       "input_tokens": sum(x.input_tokens for x in sessions),
                       "output_tokens": sum(x.output_tokens for x in sessions)},
        }

    # ------------------------------------------------------------------ guards
    def _denied(self, request: Any, fmt: Format) -> Any:
        """A 401 answer when a token is configured and the request lacks it, else None."""
        token = self.settings.token
        if token is None:
            return None
        got = request.headers.get(TOKEN_HEADER, "")
        if hmac.compare_digest(got.encode("utf-8", "replace"), token.encode("utf-8")):
            return None
        self.stats.refused += 1
        return _plain(401, error_body(fmt, 401, f"the compactor proxy needs the "
                                      f"{TOKEN_HEADER} header; fix: send the proxy's token"))

    def _upstream(self, fmt: Format) -> str | None:
        return (self.settings.openai_upstream if fmt is Format.OPENAI
                else self.settings.anthropic_upstream)

    async def _body(self, request: Any, fmt: Format) -> bytes | Any:
        """The request body, or a 413 answer when it is over ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        too_big = _plain(413, error_body(fmt, 413, f"request body over the proxy's limit of "
                                         f"{limit} bytes"))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.stats.refused += 1
            return too_big
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                self.stats.refused += 1
                return too_big
        return bytes(buf)

    # ------------------------------------------------------------------ routes
    async def _admit(self, request: Any, fmt: Format) -> tuple[str, bytes] | Any:
        """``(upstream, body)`` of an admitted request, or the answer refusing it (no
        token, no upstream for the format, a body over the limit)."""
        denied = self._denied(request, fmt)
        if denied is not None:
            return denied
        upstream = self._upstream(fmt)
        if upstream is None:
            return _plain(404, error_body(fmt, 404, "no upstream is configured for this API"))
        body = await self._body(request, fmt)
        return (upstream, body) if isinstance(body, bytes) else body

    async def _passthrough(self, request: Any, fmt: Format, path: str) -> Any:
        got = await self._admit(request, fmt)
        if not isinstance(got, tuple):
            return got
        upstream, body = got
        return await self._forward(request, fmt, upstream + path, body, None)

    async def _compacting(self, request: Any, fmt: Format, path: str) -> Any:
        got = await self._admit(request, fmt)
        if not isinstance(got, tuple):
            return got
        upstream, body = got
        send, track = body, None
        obj = None
        if not request.headers.get("content-encoding"):
            obj = (await asyncio.to_thread(_parse, body) if len(body) > OFF_LOOP_BYTES
                   else _parse(body))
        if obj is not None:
            headers = {k.lower(): v for k, v in request.headers.items()}
            add_usage = fmt is Format.OPENAI and obj.get("stream") is True \
                and with_stream_usage(obj)[1]
            out = await self._compact(obj, headers, fmt, upstream, add_usage=add_usage)
            if not isinstance(out, tuple):
                return out          # refused (hard budget)
            new, track = out
            if new is not None:
                send = new
        return await self._forward(request, fmt, upstream + path, send, track)

    async def _compact(self, obj: dict[str, Any], headers: Mapping[str, str], fmt: Format,
                       upstream: str, *, add_usage: bool = False) -> tuple[bytes | None, Any] | Any:
        """Compact one request. Returns ``(new body or None to send the original bytes,
        (the session's stats, its budget invocation, whether usage was asked for on the
        client's behalf))``, or a refusal answer (hard budget).

        ``add_usage``: a streamed chat call without ``stream_options.include_usage`` --
        the provider then reports no usage at all (OpenAI API reference, "stream_options"),
        so the session's tokens and budget would learn nothing from it. The body sent asks
        for it, and the relay drops the usage-only chunk the client did not ask for."""
        messages = obj["messages"]
        sid = session_id_for(headers, obj, fmt)
        agent = agent_for(headers, self.settings.default_agent)
        st = self.stats.session(sid, agent, fmt)
        st.calls += 1
        model = obj.get("model") if isinstance(obj.get("model"), str) else None
        mt = next((obj[k] for k in ("max_tokens", "max_completion_tokens")
                   if isinstance(obj.get(k), int) and not isinstance(obj.get(k), bool)
                   and obj[k] > 0), None)
        system = obj.get("system") if fmt is Format.ANTHROPIC else None
        tools = obj.get("tools") if isinstance(obj.get("tools"), list) else None
        kw: dict[str, Any] = dict(model=model, system=system, tools=tools, max_tokens=mt,
                                  session_id=sid, fmt=fmt)
        if self.settings.shadow:
            await self._shadow(messages, kw, st)
            return None, (st, None, False)
        caller = Caller(fmt, upstream, {h: headers[h] for h in ANTHROPIC_COPY if h in headers},
                        agent, sid)
        inv = None
        try:
            with caller_context(caller):
                if self.monitor is not None:
                    inv = self._invocation(agent, sid, model, mt)
                    kw.pop("model")
                    r = await inv.compact(self.compactor, messages, **kw)
                else:
                    r = await self.compactor.compact_if_needed(messages, **kw)
        except Exception as e:  # noqa: BLE001 -- never fail the agent's call over compaction
            from ..budgets import HardBudgetExceededError

            if isinstance(e, HardBudgetExceededError):
                self.stats.refused += 1
                return _plain(400, error_body(fmt, 400, redact(str(e))))
            st.fallbacks += 1
            self.stats.fallbacks += 1
            msg = redact(f"{type(e).__name__}: {e}", *caller.secrets)[:500]
            log.warning("session %s: compaction failed, forwarding unchanged: %s", sid, msg)
            self.sink.emit("proxy_fallback", {"session_id": sid, "agent_id": agent,
                                              "model": model, "format": fmt.value,
                                              "error": msg})
            return None, (st, inv, False)
        st.tokens_before, st.tokens_sent = r.tokens_before, r.sent_tokens
        if r.compacted:
            st.compactions += 1
        # what to send: with question-time recall on, the history plus recalled spans
        sending = r.to_send()   # the history, with question-time recall's block when placed
        same = len(sending) == len(messages) and all(a is b for a, b in zip(sending, messages))
        if same and not add_usage:
            return None, (st, inv, False)
        new = dict(obj)
        if not same:
            self.stats.compacted_requests += 1
            out = strip_metadata(sending)
            if fmt is Format.ANTHROPIC and r.summary is not None:
                from ..adapters._caching import mark_summary
                out = mark_summary(out, obj)
            new["messages"] = out
        if add_usage:
            new = with_stream_usage(new)[0]
        data = (await asyncio.to_thread(_encode, new) if r.tokens_after > OFF_LOOP_TOKENS
                else _encode(new))
        return data, (st, inv, add_usage)

    def _invocation(self, agent: str | None, sid: str, model: str | None,
                    max_tokens: int | None) -> Any:
        key = (agent, sid)
        inv = self._invocations.get(key)
        if inv is None:
            while len(self._invocations) >= MAX_TRACKED_SESSIONS:   # the oldest: usage now
                self._invocations.pop(next(iter(self._invocations))).finish()
            inv = self._invocations[key] = self.monitor.start(
                agent, session_id=sid, model=model, max_tokens=max_tokens or 0)
        return inv

    async def _shadow(self, messages: list[Any], kw: Mapping[str, Any], st: SessionStats) -> None:
        """Record what compaction would do (``dry_run``, in a thread); never raises."""
        try:
            p = await asyncio.to_thread(lambda: self.compactor.dry_run(messages, **kw))
        except Exception as e:  # noqa: BLE001 -- shadow mode never affects the call
            st.fallbacks += 1
            self.sink.emit("proxy_fallback", {"session_id": kw["session_id"],
                                              "agent_id": st.agent_id, "model": kw["model"],
                                              "format": st.fmt, "shadow": True,
                                              "error": redact(f"{type(e).__name__}: {e}")[:500]})
            return
        st.tokens_before = st.tokens_sent = p.tokens_before
        saved = max(0, p.tokens_before - p.tokens_after) if p.compact else 0
        if p.compact:
            st.would_compact += 1
        rate = _input_price(kw["model"], self.compactor.prices)
        self.sink.emit("proxy_shadow", {
            "session_id": kw["session_id"], "agent_id": st.agent_id, "model": kw["model"],
            "format": st.fmt, "would_compact": p.compact, "reason": p.reason,
            "tokens_before": p.tokens_before,
            "tokens_after": p.tokens_after if p.compact else p.tokens_before,
            "tokens_saved": saved, "window": p.window,
            "messages_evicted": len(p.evicted) if p.compact else 0,
            "input_cost_saved_usd": None if rate is None else round(saved * rate / 1e6, 6)})

    # ------------------------------------------------------------------ forwarding
    async def _forward(self, request: Any, fmt: Format, url: str, body: bytes,
                       track: Any) -> Any:
        query = request.url.query
        if query:
            url = f"{url}?{query}"
        headers = upstream_headers(request.headers.items())
        if track is not None and track[2]:
            # the relay reads the SSE events to drop the added usage chunk: plain bytes
            headers = [(k, v) for k, v in headers if k.lower() != "accept-encoding"]
            headers.append(("accept-encoding", "identity"))
        req = self.client.build_request("POST", url, content=body, headers=headers)
        self.stats.requests += 1
        try:
            resp = await self.client.send(req, stream=True)
        except httpx.TimeoutException as e:
            return self._upstream_failed(fmt, 504, "timeout", e)
        except httpx.HTTPError as e:
            return self._upstream_failed(fmt, 502, "connection", e)
        return _relay(self, resp, track)

    def _upstream_failed(self, fmt: Format, status: int, kind: str, e: Exception) -> Any:
        self.stats.upstream_errors += 1
        log.warning("upstream %s before any answer: %s", kind, type(e).__name__)
        return _plain(status, error_body(fmt, status, f"the upstream did not answer "
                                         f"({kind}: {type(e).__name__})"),
                      {UPSTREAM_ERROR_HEADER: f"{kind}; {type(e).__name__}"})

    def _finished(self, outcome: str, scanner: UsageScanner, track: Any) -> None:
        """Account for a relayed answer: ``outcome`` is ``ok``, ``upstream_broken`` or
        ``client_gone``."""
        if outcome == "upstream_broken":
            self.stats.broken_streams += 1
        elif outcome == "client_gone":
            self.stats.client_disconnects += 1
        if track is None or not scanner.found:
            return
        st, inv, _ = track
        st.input_tokens += scanner.input_tokens
        st.output_tokens += scanner.output_tokens
        if inv is not None:
            inv.record_usage(scanner.input_tokens, scanner.output_tokens)


def _parse(body: bytes) -> dict[str, Any] | None:
    """The request as a dict when it is JSON with a non-empty ``messages`` list."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("messages"), list) and obj["messages"]:
        return obj
    return None


def _encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a request body."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _input_price(model: str | None, prices: Mapping[str, tuple[float, float]]) -> float | None:
    """USD per million input tokens of ``model`` (exact name, then fnmatch patterns)."""
    import fnmatch

    if not model:
        return None
    rate = prices.get(model) or next((v for k, v in prices.items()
                                      if fnmatch.fnmatchcase(model, k)), None)
    return None if rate is None else float(rate[0])


def _plain(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Any:
    from starlette.responses import Response

    return Response(body, status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


def _json(status: int, obj: Any) -> Any:
    return _plain(status, json.dumps(obj).encode())


@functools.cache
def _relay_class() -> Any:
    """The relay response class (built on first use: starlette is imported lazily)."""
    from starlette.responses import StreamingResponse

    class Relay(StreamingResponse):
        """The upstream's answer, relayed chunk by chunk as it arrives (raw bytes: any
        content encoding untouched). An upstream that breaks off mid-body leaves the
        client's response incomplete at the same point (the server then closes the
        connection); a client that goes away closes the upstream response."""

        def __init__(self, proxy: Proxy, resp: httpx.Response, track: Any) -> None:
            self.proxy = proxy
            self.resp = resp
            self.track = track
            self.status_code = resp.status_code
            self.background = None
            self.raw_headers = client_headers(resp.headers.raw, keep_length=True)
            self.scanner = UsageScanner(resp.headers.get("content-type", ""),
                                        resp.headers.get("content-encoding", ""))
            # the usage chunk asked for on the client's behalf is read, not relayed
            self.hide_usage = bool(track is not None and track[2]) and self.scanner.sse \
                and self.scanner.plain
            if self.hide_usage:
                self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
            self._pending = bytearray()

        def _client_bytes(self, chunk: bytes) -> bytes:
            """What of ``chunk`` goes to the client: all of it, or, when hiding the usage
            chunk, its complete SSE events but that one (a partial event waits)."""
            if not self.hide_usage:
                return chunk
            self._pending += chunk
            return b"".join(e for e in sse_events(self._pending) if not is_usage_only_event(e))

        async def stream_response(self, send: Any) -> None:
            stats = self.proxy.stats
            stats.in_flight += 1
            outcome = "client_gone"
            try:
                await send({"type": "http.response.start", "status": self.status_code,
                            "headers": self.raw_headers})
                try:
                    async for chunk in self.resp.aiter_raw():
                        self.scanner.feed(chunk)
                        out = self._client_bytes(chunk)
                        if out:
                            await send({"type": "http.response.body", "body": out,
                                        "more_body": True})
                except httpx.HTTPError as e:
                    outcome = "upstream_broken"
                    if self._pending:       # a partial event: cut where the upstream cut
                        await send({"type": "http.response.body", "body": bytes(self._pending),
                                    "more_body": True})
                    log.warning("upstream broke off its answer (%s); the client's answer "
                                "is cut at the same point", type(e).__name__)
                    return
                self.scanner.close()
                outcome = "ok"
                await send({"type": "http.response.body", "body": bytes(self._pending),
                            "more_body": False})
            finally:
                stats.in_flight -= 1
                await self.resp.aclose()
                self.proxy._finished(outcome, self.scanner, self.track)

    return Relay


def _relay(proxy: Proxy, resp: httpx.Response, track: Any) -> Any:
    """The relay response of an upstream answer."""
    return _relay_class()(proxy, resp, track)


__all__ = ["CHAT", "COUNT_TOKENS", "DEFAULT_ANTHROPIC_UPSTREAM", "DEFAULT_MAX_BODY_BYTES",
           "DEFAULT_OPENAI_UPSTREAM", "HEALTH", "MESSAGES", "STATUS", "UPSTREAM_ERROR_HEADER",
           "Proxy", "ProxySettings", "ProxyStats", "SessionStats", "check_upstream"]
