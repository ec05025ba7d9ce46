"""Anthropic adapter: a drop-in wrapper around ``anthropic.AsyncAnthropic`` that compacts
``messages`` before every call, and a summarizer backed by a cheap Claude model.

    client = CompactingAnthropic(anthropic.AsyncAnthropic(), compactor)
    response = await client.messages.create(model=..., system=..., tools=..., max_tokens=...,
                                            messages=history)   # the SDK's own Message

See ``docs/adapters/anthropic.md``. Requires the ``anthropic`` package
(``pip install agent-context-compactor[anthropic]``).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import anthropic
import pydantic

from compactor._compactor import CompactionResult, MessageCompactor
from compactor._errors import ConfigError
from compactor._format import Format, strip_metadata
from compactor._sink import LedgerSink
from compactor._summary import SummaryRequest

from ._caching import mark_summary
from ._calibration import CalibrationState, Calibrator, call_window
from ._prompt import DEFAULT_PROMPT, SYSTEM_PROMPT, check_template, finish, local_merge, prompt_for
from ._resilience import (CallContext, ProviderCallError, RetryPolicy, call_with_retries,
                          parse_retry_after, redact)

log = logging.getLogger("compactor.adapters")

DEFAULT_SUMMARY_MODEL = "claude-haiku-4-5"


def provider_error(e: BaseException, *secrets: str | None) -> ProviderCallError:
    """Map an ``anthropic`` SDK exception onto :class:`ProviderCallError`: status errors
    keep their status and ``retry-after``; timeouts and connection errors are transient;
    anything else (an unparseable body) is ``malformed`` and not retried. The message is
    passed through :func:`~compactor.adapters.redact` (with ``secrets``), since an error
    body may echo a credential and the error may be recorded without the chain's scrub."""
    if isinstance(e, anthropic.APIStatusError):
        headers = getattr(e.response, "headers", None)
        return ProviderCallError(redact(f"HTTP {e.status_code}: {e.message}", *secrets),
                                 status=e.status_code, retry_after_s=parse_retry_after(headers))
    if isinstance(e, anthropic.APITimeoutError):
        return ProviderCallError("the request timed out", kind="timeout")
    if isinstance(e, anthropic.APIConnectionError):
        return ProviderCallError(redact(f"connection error: {e}", *secrets), kind="connection")
    return ProviderCallError(redact(f"malformed response: {type(e).__name__}: {e}", *secrets),
                             kind="malformed")


def _plain(value: Any) -> Any:
    """``value`` with SDK objects (pydantic models, such as the ``TextBlock``,
    ``ToolUseBlock`` and ``ThinkingBlock`` of a ``response.content`` appended to the
    history) dumped to the dicts the SDK itself would send; other values unchanged."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_unset=True, by_alias=True,
                                exclude=getattr(value, "__api_exclude__", None))
    return value


def plain_messages(messages: Sequence[Any]) -> list[Any]:
    """``messages`` with every SDK content-block object turned into its wire dict, so the
    compactor sees the ``tool_use`` ids and thinking blocks of turns appended as
    ``{"role": "assistant", "content": response.content}`` (the SDK's own agent-loop
    pattern). Messages with nothing to convert are kept as the same objects."""
    out: list[Any] = []
    for m in messages:
        m = _plain(m)
        content = m.get("content") if isinstance(m, Mapping) else None
        if (isinstance(content, Sequence) and not isinstance(content, (str, bytes))
                and (not isinstance(content, list)
                     or any(isinstance(b, pydantic.BaseModel) for b in content))):
            m = {**m, "content": [_plain(b) for b in content]}
        out.append(m)
    return out


def usage_input_tokens(usage: Any) -> int:
    """The input tokens the provider counted for a request: ``input_tokens`` plus
    ``cache_creation_input_tokens`` plus ``cache_read_input_tokens`` (missing ones are 0)."""
    return sum(int(getattr(usage, k, 0) or 0) for k in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))


class AnthropicSummarizer:
    """A :class:`~compactor.Summarizer` that asks a Claude model for the summary.

    Each call sends ``prompt`` (goals, decisions, open tasks, errors, exact identifiers)
    with the span as text, under ``retry`` (tenacity; the client's own retries are turned
    off for these calls so attempts are counted once). Every response's usage is appended
    to ``SummaryRequest.usage`` (``model``, ``input_tokens``, ``output_tokens``), which the
    compactor prices. A merge request whose partial summaries fit the budget together is
    answered locally, without a call.

    Args:
        client: an ``anthropic.AsyncAnthropic`` (the raw client, not the wrapper).
        model: the summarizing model (default ``claude-haiku-4-5``).
        max_tokens: most output tokens one call may produce (the call asks for
            ``min(max_tokens, 2 x budget)``).
        prompt: the user-prompt template; placeholders ``{transcript}`` (required) and
            ``{budget}`` (the summary budget, tokens).
        input_window: the largest span one call takes, in tokens (larger spans are split
            by the compactor and summarized concurrently).
        timeout_s: the timeout of one call, seconds.
        retry: the :class:`RetryPolicy`.
        sink: receives ``summarizer_retry`` events (use the compactor's sink).
        agent_id: reported with every event.

    Raises:
        ConfigError: ``max_tokens``/``input_window``/``timeout_s`` not positive, or a bad
            ``prompt`` (``e.field`` names it).
    """

    def __init__(self, client: anthropic.AsyncAnthropic, *, model: str = DEFAULT_SUMMARY_MODEL,
                 max_tokens: int = 2048, prompt: str = DEFAULT_PROMPT,
                 input_window: int = 100_000, timeout_s: float = 60.0,
                 retry: RetryPolicy | None = None, sink: LedgerSink | None = None,
                 agent_id: str | None = None) -> None:
        for name, v in (("max_tokens", max_tokens), ("input_window", input_window),
                        ("timeout_s", timeout_s)):
            if not v > 0:
                raise ConfigError(f"{name} must be > 0, got {v!r}", field=name)
        self.client = client.with_options(max_retries=0, timeout=timeout_s)
        self.model = model
        self.max_tokens = max_tokens
        self.prompt = check_template(prompt)
        self.input_window = input_window
        self.retry = retry or RetryPolicy()
        self.sink = sink
        self.agent_id = agent_id
        key = getattr(client, "api_key", None)
        self.secrets: tuple[str, ...] = (key,) if isinstance(key, str) and key else ()
        self.name = f"anthropic/{model}"

    async def summarize(self, request: SummaryRequest) -> str:
        """The model's summary of ``request``.

        Raises:
            ProviderCallError: the call failed after the retries allowed, or the response
                had no text (``kind="malformed"``).
        """
        merged = local_merge(request)
        if merged is not None:
            return merged
        ctx = CallContext(self.name, self.model, request.session_id, self.agent_id, self.secrets)
        body = prompt_for(self.prompt, request)

        async def call() -> Any:
            try:
                return await self.client.messages.create(
                    model=self.model, max_tokens=min(self.max_tokens, 2 * request.max_tokens),
                    system=SYSTEM_PROMPT, messages=[{"role": "user", "content": body}])
            except anthropic.AnthropicError as e:
                raise provider_error(e, *self.secrets) from e
            except ValueError as e:  # a body that is not JSON
                raise provider_error(e, *self.secrets) from e

        resp = await call_with_retries(call, policy=self.retry, sink=self.sink, context=ctx)
        usage = getattr(resp, "usage", None)
        request.usage.append({"model": self.model,
                              "input_tokens": usage_input_tokens(usage),
                              "output_tokens": int(getattr(usage, "output_tokens", 0) or 0)})
        text = "".join(getattr(b, "text", "") for b in getattr(resp, "content", None) or []
                       if getattr(b, "type", None) == "text")
        if not text.strip():
            raise ProviderCallError("the response has no text content", kind="malformed")
        return finish(self.prompt, request, text.strip())


class CompactingAnthropic:
    """``anthropic.AsyncAnthropic`` with compaction before every Messages call.

    ``client.messages.create(**kwargs)`` and ``client.messages.stream(**kwargs)`` compact
    ``kwargs["messages"]`` (counting ``system`` and ``tools``, reserving ``max_tokens``),
    strip the compactor's pin flags, put a ``cache_control`` breakpoint on the summary
    message, and forward every other argument unchanged; they return the SDK's own objects
    (``Message``, ``AsyncStream``, ``AsyncMessageStream``). With question-time recall on
    (a compactor with a store and ``recall_share > 0``), what is sent is
    ``CompactionResult.to_send()``: the history plus the recalled block, the last text block
    of the newest user turn, for this request only. Any other attribute is the wrapped
    client's (``client.models``, ``client.messages.count_tokens``...).

    Self-calibration: after each non-streamed response (and at the end of a
    ``messages.stream``), the provider's input count (``usage_input_tokens``) is compared
    with our estimate of that request (a recalled block's tokens included); the per-model
    fit ``provider ~= slope x estimate + offset`` (:meth:`calibration`, see
    :class:`Calibrator`) turns the provider's window into the window, in our tokens, handed
    to the compactor. When a history is within ``exact_band`` of the compaction threshold
    and was not compacted, ``messages.count_tokens`` gives the exact count, which
    calibrates the factor before the decision is taken again.

    Args:
        client: the ``anthropic.AsyncAnthropic`` to wrap.
        compactor: the :class:`~compactor.MessageCompactor` (default: offline summaries).
        session_id: the compactor session of this conversation.
        window: the provider's context window, in provider tokens (default: the
            compactor's ``window``, else its model/tier window).
        calibrate: apply and update the correction factor.
        exact_band: a history whose estimate is at least ``(1 - exact_band)`` of the
            compaction threshold, and not compacted, is counted exactly; 0 disables.
        cache_summary: put the ``cache_control`` breakpoint on the summary message.
        calibrator: share one :class:`Calibrator` between wrappers (default: a new one).
        count_timeout_s: the longest timeout of one ``messages.count_tokens`` call, seconds
            (the client's own timeout when shorter); it is tried once (no SDK retries), and when it fails the estimate is kept.

    ``with_options(...)`` (and its alias ``copy``) returns a wrapper of the re-optioned
    client that shares this one's compactor, session, calibrator and settings.

    Raises:
        ConfigError: ``exact_band`` not in [0, 1), ``window`` or ``count_timeout_s`` not
            positive.
    """

    def __init__(self, client: anthropic.AsyncAnthropic, compactor: MessageCompactor | None = None,
                 *, session_id: str | None = None, window: int | None = None,
                 calibrate: bool = True, exact_band: float = 0.1, cache_summary: bool = True,
                 calibrator: Calibrator | None = None, count_timeout_s: float = 10.0) -> None:
        if not count_timeout_s > 0:
            raise ConfigError(f"count_timeout_s must be > 0 seconds, got {count_timeout_s!r}",
                              field="count_timeout_s")
        if not 0 <= exact_band < 1:
            raise ConfigError(f"exact_band must be in [0, 1), got {exact_band}", field="exact_band")
        if window is not None and window <= 0:
            raise ConfigError(f"window must be > 0 tokens, got {window}", field="window")
        self._client = client
        self.compactor = compactor or MessageCompactor()
        self.session_id = session_id
        self.window = window
        self.calibrate = calibrate
        self.exact_band = exact_band
        self.cache_summary = cache_summary
        self.calibrator = calibrator or Calibrator()
        self.count_timeout_s = count_timeout_s
        self.exact_counts = 0
        self.last_result: CompactionResult | None = None
        self.messages = _CompactingMessages(self, client.messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def with_options(self, **options: Any) -> "CompactingAnthropic":
        """``AsyncAnthropic.with_options(**options)``, still compacting: a wrapper of the
        re-optioned client sharing this one's compactor, session and calibrator."""
        twin = CompactingAnthropic(
            self._client.with_options(**options), self.compactor, session_id=self.session_id,
            window=self.window, calibrate=self.calibrate, exact_band=self.exact_band,
            cache_summary=self.cache_summary, calibrator=self.calibrator,
            count_timeout_s=self.count_timeout_s)
        return twin

    copy = with_options

    def calibration(self, model: str) -> CalibrationState:
        """The correction factor of ``model`` and its last relative error."""
        return self.calibrator.state(model)

    # ------------------------------------------------------------------ internals
    def _window(self, model: str | None, max_tokens: int | None) -> int:
        """The window, in our tokens, for this call (calibrated)."""
        w = call_window(self.compactor, self.calibrator, window=self.window, model=model,
                        max_tokens=max_tokens, calibrate=self.calibrate)
        return w if w is not None else self.compactor.windows.window_for(model)

    async def _compact(self, kwargs: Mapping[str, Any], window: int) -> CompactionResult:
        return await self.compactor.compact_if_needed(
            kwargs["messages"], model=kwargs.get("model"), system=kwargs.get("system"),
            tools=kwargs.get("tools"), max_tokens=kwargs.get("max_tokens"),
            session_id=self.session_id, window=window, fmt=Format.ANTHROPIC)

    async def prepare(self, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], CompactionResult | None]:
        """The keyword arguments to forward (``messages`` compacted, pin flags stripped,
        the summary cache breakpoint added) and the compaction result (None when there
        was no ``messages`` list to compact: the SDK then reports the error itself).

        Raises:
            InvalidHistoryError, ContextOverflowError, ConfigError: from the compactor.
        """
        messages = kwargs.get("messages")
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
            return dict(kwargs), None
        kwargs = {**kwargs, "messages": plain_messages(messages)}
        model = kwargs.get("model")
        window = self._window(model, kwargs.get("max_tokens"))
        r = await self._compact(kwargs, window)
        if (self.exact_band and self.calibrate and not r.compacted and isinstance(model, str)
                and r.tokens_after >= (1 - self.exact_band) * self.compactor.config.high_watermark
                * r.window):
            exact = await self._count_exact(kwargs, r.messages)
            if exact is not None:
                self.calibrator.observe(model, r.tokens_after, exact)
                again = self._window(model, kwargs.get("max_tokens"))
                if again != window:
                    r = await self._compact(kwargs, again)
        # what to send: the history, with question-time recall's block when one was placed
        out: list[Mapping[str, Any]] = strip_metadata(r.to_send())
        if self.cache_summary:   # on every call that carries a summary, so its prefix is read
            out = mark_summary(out, kwargs)   # from the cache, not only on compacting calls
        self.last_result = r
        return {**kwargs, "messages": out}, r

    async def _count_exact(self, kwargs: Mapping[str, Any],
                           messages: Sequence[Mapping[str, Any]]) -> int | None:
        """``messages.count_tokens`` of the request, or None when it fails (logged)."""
        args = {k: kwargs[k] for k in ("model", "system", "tools", "tool_choice", "thinking")
                if kwargs.get(k) is not None}
        try:
            # an optional refinement: one attempt, bounded, and any failure (an SDK error, a
            # body that is not JSON, a missing field) keeps the estimate
            own = getattr(self._client, "timeout", None)
            timeout = (min(float(own), self.count_timeout_s)
                       if isinstance(own, (int, float)) and own > 0 else self.count_timeout_s)
            client = self._client.with_options(max_retries=0, timeout=timeout)
            got = await client.messages.count_tokens(messages=strip_metadata(messages), **args)
            n = int(got.input_tokens)
        except Exception as e:  # noqa: BLE001 -- never fail the agent's call over a count
            log.info("count_tokens failed (%s); keeping the estimate", type(e).__name__)
            return None
        self.exact_counts += 1
        return n

    def observe(self, model: Any, result: CompactionResult | None, usage: Any) -> None:
        """Calibrate ``model`` from a response's ``usage`` for the request ``result`` sent
        (our estimate of it: ``result.sent_tokens``, a recalled block included)."""
        if self.calibrate and result is not None and isinstance(model, str) and usage is not None:
            self.calibrator.observe(model, result.sent_tokens, usage_input_tokens(usage))


class _CompactingMessages:
    """``client.messages`` with ``create`` and ``stream`` compacting first."""

    def __init__(self, owner: CompactingAnthropic, messages: Any) -> None:
        self._owner = owner
        self._messages = messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._messages, name)

    async def create(self, **kwargs: Any) -> Any:
        """``AsyncAnthropic.messages.create`` after compaction; returns the SDK's object
        (a ``Message``, or an ``AsyncStream`` of events with ``stream=True``)."""
        kw, r = await self._owner.prepare(kwargs)
        resp = await self._messages.create(**kw)
        if not kw.get("stream"):
            self._owner.observe(kw.get("model"), r, getattr(resp, "usage", None))
        return resp

    def stream(self, **kwargs: Any) -> "_CompactingStream":
        """``AsyncAnthropic.messages.stream`` after compaction: an async context manager
        that yields the SDK's ``AsyncMessageStream``; the stream itself is untouched."""
        return _CompactingStream(self._owner, self._messages, kwargs)


class _CompactingStream:
    def __init__(self, owner: CompactingAnthropic, messages: Any, kwargs: dict[str, Any]) -> None:
        self._owner = owner
        self._messages = messages
        self._kwargs = kwargs
        self._manager: Any = None
        self._stream: Any = None
        self._result: CompactionResult | None = None

    async def __aenter__(self) -> Any:
        kw, self._result = await self._owner.prepare(self._kwargs)
        self._manager = self._messages.stream(**kw)
        self._stream = await self._manager.__aenter__()
        return self._stream

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            snap = self._stream.current_message_snapshot if exc[0] is None else None
        except Exception:  # noqa: BLE001 -- no snapshot yet: nothing to calibrate from
            snap = None
        if snap is not None and getattr(snap, "stop_reason", None):
            self._owner.observe(self._kwargs.get("model"), self._result, snap.usage)
        return await self._manager.__aexit__(*exc)


__all__ = ["DEFAULT_SUMMARY_MODEL", "AnthropicSummarizer", "CalibrationState", "Calibrator",
           "CompactingAnthropic", "plain_messages", "provider_error", "usage_input_tokens"]
