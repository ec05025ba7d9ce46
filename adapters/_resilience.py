"""Resilience for summarizers that call a model: bounded retries (tenacity) and a fallback
chain whose every step is reported to the ledger sink.

* :class:`RetryPolicy` -- which failures are retried and how long to wait: exponential
  backoff with full jitter, ``retry-after`` honoured, bounded by attempts *and* a total
  deadline.
* :class:`ProviderCallError` -- what a provider call raises (HTTP status, ``retry-after``,
  whether it is transient); adapters map their SDK's or httpx's errors onto it.
* :func:`call_with_retries` -- run one provider call under a policy, emitting one
  ``summarizer_retry`` event per retry.
* :class:`FallbackChain` -- a :class:`~compactor.Summarizer` that tries its members in
  order (primary, then an optional secondary) and treats an empty summary, a malformed
  response or a "summary" longer than its input as a failure; each step down the chain is a
  ``summarizer_fallback`` event. Give it to ``MessageCompactor(summarizer=...)``: the
  compactor's own fallback (the offline extractive summarizer) and its final plain-truncation
  notice complete the chain, so the agent's call never fails because summarizing failed.

Records never carry credentials: error texts pass through :func:`redact` first (the
package's one set of rules, ``compactor._redact.redact``, plus the adapter's own keys).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar

from tenacity import (AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt,
                      stop_before_delay, wait_random_exponential)

from compactor._compactor import MessageCompactor
from compactor._summarizing import SUMMARY_SLACK_TOKENS, check_summary, input_tokens  # noqa: F401
from compactor._errors import ConfigError, SummarizerError
from compactor._redact import redact
from compactor._sink import LedgerSink, NullSink
from compactor._summary import ExtractiveSummarizer, Summarizer, SummaryRequest

log = logging.getLogger("compactor.adapters")

T = TypeVar("T")

#: HTTP statuses retried: request timeout, conflict, rate limit, every 5xx (529 is
#: Anthropic's "overloaded").
RETRY_STATUSES = frozenset({408, 409, 429, *range(500, 600)})


def is_retryable_status(status: int) -> bool:
    """True for 408, 409, 429 and every 5xx (529 "overloaded" included)."""
    return status in RETRY_STATUSES


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (milliseconds), else ``retry-after`` (seconds
    or an HTTP date); None when absent or unreadable. Never negative."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        parsed = parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # "-0000" or no zone: an HTTP date is always GMT (RFC 9110)
        parsed = parsed.replace(tzinfo=timezone.utc)
    when = parsed.timestamp()
    return max(0.0, when - (time.time() if now is None else now))


class ProviderCallError(SummarizerError):
    """A provider call failed.

    Attributes:
        status: the HTTP status, or None (connection error, timeout, malformed body).
        retry_after_s: the server's ``retry-after`` in seconds, when it sent one.
        retryable: whether :func:`call_with_retries` may try again (transient: 408, 409,
            429, 5xx, connection errors, timeouts); malformed or empty responses are not.
        kind: ``"status"``, ``"connection"``, ``"timeout"`` or ``"malformed"``.
    """

    def __init__(self, message: str, *, status: int | None = None, kind: str = "status",
                 retry_after_s: float | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.retry_after_s = retry_after_s
        self.retryable = (retryable if retryable is not None else
                          kind in ("connection", "timeout") or
                          (status is not None and is_retryable_status(status)))


@dataclass(frozen=True)
class RetryPolicy:
    """How a summarizer retries a transient failure.

    Attributes:
        attempts: most calls in all, the first included (>= 1).
        deadline_s: total wall-time bound of all attempts and waits, in seconds; an attempt
            is cancelled when it runs past it, and no wait is started that would end past it.
        backoff_s: scale of the exponential backoff: the wait before retry ``n`` is uniform
            in ``[0, min(backoff_max_s, backoff_s * 2**n))`` seconds (full jitter).
        backoff_max_s: cap of one backoff wait, in seconds.
        retry_after_max_s: the longest server ``retry-after`` honoured, in seconds; a
            retry-after wait is ``max(retry-after, jittered backoff)``, capped by this.

    Raises:
        ConfigError: a field is out of range (``e.field`` names it).
    """

    attempts: int = 4
    deadline_s: float = 60.0
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"attempts must be >= 1, got {self.attempts}; fix: 1 disables "
                              "retries", field="attempts")
        for name in ("deadline_s", "backoff_s", "backoff_max_s", "retry_after_max_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {v!r}",
                                  field=name)
        if self.deadline_s == 0:
            raise ConfigError("deadline_s must be > 0 seconds", field="deadline_s")

    def wait_s(self, retry_number: int, retry_after_s: float | None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        jitter = wait_random_exponential(multiplier=self.backoff_s, max=self.backoff_max_s)
        state = RetryCallState(None, None, (), {})
        state.attempt_number = retry_number
        backoff = float(jitter(state))
        if retry_after_s is None:
            return backoff
        return max(min(retry_after_s, self.retry_after_max_s), backoff)


@dataclass(frozen=True)
class CallContext:
    """Who is calling, for the ledger: the summarizer's name, its model, the session and
    agent ids, and secrets to scrub from error texts (never recorded)."""

    summarizer: str
    model: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)


async def call_with_retries(call: Callable[[], Awaitable[T]], *, policy: RetryPolicy,
                            sink: LedgerSink | None = None,
                            context: CallContext) -> T:
    """``await call()`` under ``policy``; retried when it raises a retryable
    :class:`ProviderCallError` (or ``asyncio.TimeoutError`` from the deadline).

    Each retry emits ``summarizer_retry`` with ``attempt`` (the attempt that failed,
    1-based), ``max_attempts``, ``status`` (HTTP status or None), ``kind``, ``delay_s``
    (the wait before the next attempt, seconds), ``retry_after_s``, ``error`` (redacted)
    and the context fields.

    Raises:
        ProviderCallError: the last failure, when attempts or the deadline ran out, or at
            once for a non-retryable failure. Other exceptions propagate unchanged.
    """
    sink = sink or NullSink()
    start = time.monotonic()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        ra = exc.retry_after_s if isinstance(exc, ProviderCallError) else None
        return policy.wait_s(state.attempt_number, ra)

    def report(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        sink.emit("summarizer_retry", _fields(context, exc, {
            "attempt": state.attempt_number, "max_attempts": policy.attempts,
            "delay_s": round(float(delay), 4)}))
        log.info("summarizer %s: attempt %d failed (%s); retrying in %.3f s",
                 context.summarizer, state.attempt_number, type(exc).__name__, delay)

    async def bounded() -> T:
        left = policy.deadline_s - (time.monotonic() - start)
        if left <= 0:
            raise ProviderCallError("the retry deadline passed", kind="timeout", retryable=False)
        try:
            async with asyncio.timeout(left):
                return await call()
        except TimeoutError as e:
            raise ProviderCallError(f"the call ran past the {policy.deadline_s:g} s deadline",
                                    kind="timeout", retryable=False) from e

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.deadline_s),
        wait=wait, before_sleep=report, reraise=True,
        retry=retry_if_exception(lambda e: isinstance(e, ProviderCallError) and e.retryable))
    return await retrying(bounded)


def _fields(context: CallContext, exc: BaseException | None,
            extra: Mapping[str, Any]) -> dict[str, Any]:
    """Ledger fields of a failed call; the error text is redacted."""
    return {
        "session_id": context.session_id, "agent_id": context.agent_id,
        "summarizer": context.summarizer, "model": context.model,
        "status": getattr(exc, "status", None), "kind": getattr(exc, "kind", None),
        "retry_after_s": getattr(exc, "retry_after_s", None), **extra,
        "error": redact(f"{type(exc).__name__}: {exc}", *context.secrets)[:500],
    }


async def post_json(client: Any, url: str, *, body: Mapping[str, Any],
                    headers: Mapping[str, str], timeout_s: float,
                    secrets: Sequence[str] = ()) -> Mapping[str, Any]:
    """POST ``body`` with an ``httpx.AsyncClient`` and read a JSON object back.

    Raises:
        ProviderCallError: ``kind="timeout"``, ``"connection"`` (connect errors, resets,
            truncated bodies), ``"status"`` (HTTP >= 400; the body, secrets masked, and
            ``retry-after`` kept) or ``"malformed"`` (not a JSON object).
    """
    import httpx

    try:
        resp = await client.post(url, json=body, headers=dict(headers), timeout=timeout_s)
    except httpx.TimeoutException as e:
        raise ProviderCallError("the request timed out", kind="timeout") from e
    except httpx.TransportError as e:  # connect errors, resets, truncated bodies
        raise ProviderCallError(f"connection error: {type(e).__name__}",
                                kind="connection") from e
    if resp.status_code >= 400:
        raise ProviderCallError(f"HTTP {resp.status_code}: {redact(resp.text, *secrets)[:300]}",
                                status=resp.status_code,
                                retry_after_s=parse_retry_after(resp.headers))
    try:
        data = resp.json()
    except ValueError as e:
        raise ProviderCallError("malformed response: the body is not JSON",
                                kind="malformed") from e
    if not isinstance(data, Mapping):
        raise ProviderCallError("malformed response: not a JSON object", kind="malformed")
    return data


def _name(s: Summarizer) -> str:
    return str(getattr(s, "name", type(s).__name__))


class FallbackChain:
    """A :class:`~compactor.Summarizer` that tries ``summarizers`` in order.

    A member fails when it raises, or returns an empty summary or one longer than its input
    (:func:`check_summary`); the chain then emits ``summarizer_fallback`` (``summarizer``,
    ``fallback`` = the next member's name, ``error``, ``session_id``, ``agent_id``) and tries
    the next. When all fail it raises :class:`~compactor.SummarizerError`, and the
    compactor's own fallback takes over (the offline extractive summarizer, then a
    plain-truncation notice), reporting that step too.

    ``input_window`` (tokens) is the smallest of the members' windows, so a span the
    compactor splits fits every member.

    Args:
        summarizers: one or more summarizers, primary first.
        sink: where the fallback events go (use the compactor's sink).
        agent_id: reported with every event.
        secrets: strings scrubbed from error texts (API keys).

    Raises:
        ConfigError: no summarizer given (``field="summarizers"``).
    """

    def __init__(self, *summarizers: Summarizer, sink: LedgerSink | None = None,
                 agent_id: str | None = None, secrets: Sequence[str] = ()) -> None:
        if not summarizers:
            raise ConfigError("FallbackChain needs at least one summarizer", field="summarizers")
        self.summarizers = tuple(summarizers)
        self.sink = sink or NullSink()
        self.agent_id = agent_id
        self.secrets = tuple(secrets)
        self.name = "chain(" + ">".join(_name(s) for s in summarizers) + ")"
        windows = [w for w in (getattr(s, "input_window", None) for s in summarizers) if w]
        self.input_window: int | None = min(windows) if windows else None

    async def summarize(self, request: SummaryRequest) -> str:
        """The first usable summary of ``request`` (see the class docstring).

        Raises:
            SummarizerError: every member failed (the last error is chained).
        """
        last: Exception | None = None
        for k, s in enumerate(self.summarizers):
            try:
                return check_summary(await s.summarize(request), request)
            except Exception as e:  # noqa: BLE001 -- any failure moves down the chain
                last = e
                nxt = (_name(self.summarizers[k + 1]) if k + 1 < len(self.summarizers)
                       else "compactor fallback")
                ctx = CallContext(_name(s), getattr(s, "model", None), request.session_id,
                                  self.agent_id, self.secrets)
                self.sink.emit("summarizer_fallback", _fields(ctx, e, {"fallback": nxt}))
                log.warning("summarizer %s failed (%s); trying %s", _name(s),
                            type(e).__name__, nxt)
        raise SummarizerError(f"every summarizer of {self.name} failed") from last


def resilient_compactor(primary: Summarizer, *, secondary: Summarizer | None = None,
                        sink: LedgerSink | None = None, **kwargs: Any) -> MessageCompactor:
    """A :class:`~compactor.MessageCompactor` whose summaries come from ``primary``, then
    ``secondary`` (if given), then the offline :class:`~compactor.ExtractiveSummarizer`,
    then a plain-truncation notice; every step down is a ``summarizer_fallback`` event in
    ``sink``. ``kwargs`` go to ``MessageCompactor`` (``counter``, ``config``, ``window``...).

    Raises:
        ConfigError: as ``MessageCompactor`` does.
    """
    members = [primary] + ([secondary] if secondary is not None else [])
    secrets = tuple(s for m in members for s in getattr(m, "secrets", ()))
    chain = FallbackChain(*members, sink=sink, agent_id=kwargs.get("agent_id"), secrets=secrets)
    return MessageCompactor(summarizer=chain, fallback=ExtractiveSummarizer(), sink=sink, **kwargs)


__all__ = ["RETRY_STATUSES", "CallContext", "FallbackChain", "ProviderCallError", "RetryPolicy",
           "call_with_retries", "check_summary", "input_tokens", "is_retryable_status",
           "parse_retry_after", "redact", "resilient_compactor"]
