"""OpenAI SDK adapter: drop-in wrappers around ``openai.AsyncOpenAI`` and ``openai.OpenAI``
that compact the history before every Chat Completions and Responses call.

    client = CompactingOpenAI(openai.AsyncOpenAI(), compactor, session_id="run-42")
    completion = await client.chat.completions.create(model=..., tools=..., messages=history)

    sync_client = CompactingSyncOpenAI(openai.OpenAI(), compactor, session_id="run-43")
    completion = sync_client.chat.completions.create(model=..., messages=history)

Both return the SDK's own objects (``ChatCompletion``, ``Response``, ``AsyncStream`` /
``Stream``). See ``docs/adapters/openai-sdk.md``. Requires the ``openai`` package
(``pip install 'agent-context-compactor[openai]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, AsyncIterator

from compactor._compactor import CompactionResult, MessageCompactor
from compactor._errors import ConfigError
from compactor._format import Format, strip_metadata, with_stream_usage
from compactor._optional import require

from ._calibration import CalibrationState, Calibrator, call_window

openai = require("openai", extra="openai", what="compactor.adapters.openai_sdk")
import pydantic  # noqa: E402  -- a dependency of openai

#: Arguments of a ``responses.create`` call whose history lives on the provider: such a
#: call is forwarded uncompacted (the provider, not the caller, holds the earlier turns).
SERVER_STATE_ARGS = ("previous_response_id", "conversation")


# --------------------------------------------------------------------------- requests
def _plain(value: Any) -> Any:
    """``value`` with an SDK object (a pydantic model: the ``ChatCompletionMessage`` of
    ``completion.choices[0].message``, a ``response.output`` item...) dumped to the dict
    the SDK itself sends for it; other values unchanged."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_unset=True,
                                exclude=getattr(value, "__api_exclude__", None))
    return value


def plain_items(items: Sequence[Any]) -> list[Any]:
    """``items`` (chat messages or Responses input items) with every SDK object, and every
    SDK object inside a ``content`` list, turned into the dict the SDK would send, so an
    agent may append ``completion.choices[0].message`` or ``*response.output`` to its
    history as the SDK's own examples do. Dicts with nothing to convert are kept as the
    same objects."""
    out: list[Any] = []
    for m in items:
        m = _plain(m)
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list) and any(isinstance(b, pydantic.BaseModel) for b in content):
            m = {**m, "content": [_plain(b) for b in content]}
        out.append(m)
    return out


def _history(value: Any) -> bool:
    """Whether ``value`` is a non-empty list of messages/items (not a string, not the
    SDK's ``NOT_GIVEN``/``omit`` sentinels)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and bool(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _given(value: Any) -> bool:
    """Whether an argument holds a value (a non-empty string or a mapping such as
    ``{"id": ...}``), not None or one of the SDK's ``NOT_GIVEN``/``omit`` sentinels."""
    return (isinstance(value, str) and bool(value)) or isinstance(value, Mapping)


def _tools(value: Any) -> list[Any] | None:
    return [_plain(t) for t in value] if _history(value) else None


def chat_input_tokens(usage: Any) -> int:
    """The input tokens the provider counted for a chat completion: ``usage.prompt_tokens``
    (cached tokens included, as OpenAI reports them); 0 when missing."""
    return int(getattr(usage, "prompt_tokens", 0) or 0)


def responses_input_tokens(usage: Any) -> int:
    """The input tokens the provider counted for a response: ``usage.input_tokens``
    (cached tokens included); 0 when missing."""
    return int(getattr(usage, "input_tokens", 0) or 0)


# --------------------------------------------------------------------------- the shared part
class _Base:
    """What the async and the sync wrapper share: settings, the window and calibration.
    The compaction itself (awaited or run by ``compact_sync``) is the subclass's."""

    def __init__(self, client: Any, compactor: MessageCompactor | None, *,
                 session_id: str | None, window: int | None, calibrate: bool,
                 calibrator: Calibrator | None) -> None:
        if window is not None and (_int(window) is None or window <= 0):
            raise ConfigError(f"window must be a positive number of tokens, got {window!r}",
                              field="window")
        if session_id is not None and not isinstance(session_id, str):
            raise ConfigError(f"session_id must be a string or None, got {session_id!r}",
                              field="session_id")
        self._client = client
        self.compactor = compactor or MessageCompactor()
        self.session_id = session_id
        self.window = window
        self.calibrate = calibrate
        self.calibrator = calibrator or Calibrator()
        self.last_result: CompactionResult | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "_client":   # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._client, name)

    def calibration(self, model: str) -> CalibrationState:
        """The correction factor of ``model`` and its last relative error."""
        return self.calibrator.state(model)

    def _twin_kwargs(self) -> dict[str, Any]:
        return dict(session_id=self.session_id, window=self.window, calibrate=self.calibrate,
                    calibrator=self.calibrator)

    def _call_window(self, model: str | None, max_tokens: int | None) -> int:
        """The window, in our tokens, for this call (calibrated)."""
        w = call_window(self.compactor, self.calibrator, window=self.window, model=model,
                        max_tokens=max_tokens, calibrate=self.calibrate)
        return w if w is not None else self.compactor.windows.window_for(model)

    def _chat_args(self, kwargs: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]] | None:
        """The history and the compactor's arguments of a chat call (None: no ``messages``
        list to compact; the SDK then reports the error itself)."""
        messages = kwargs.get("messages")
        if not _history(messages):
            return None
        model = kwargs.get("model") if isinstance(kwargs.get("model"), str) else None
        reserve = _int(kwargs.get("max_completion_tokens")) or _int(kwargs.get("max_tokens"))
        return plain_items(messages), dict(
            model=model, tools=_tools(kwargs.get("tools")), max_tokens=reserve,
            session_id=self.session_id, window=self._call_window(model, reserve),
            fmt=Format.OPENAI)

    def _responses_args(self, kwargs: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]] | None:
        """The history (``input`` items) and the compactor's arguments of a Responses call
        (``instructions`` counted as the system prompt); None when there is nothing to
        compact: ``input`` a string or missing, or the history held by the provider
        (:data:`SERVER_STATE_ARGS`)."""
        items = kwargs.get("input")
        if not _history(items) or any(_given(kwargs.get(k)) for k in SERVER_STATE_ARGS):
            return None
        model = kwargs.get("model") if isinstance(kwargs.get("model"), str) else None
        reserve = _int(kwargs.get("max_output_tokens"))
        instructions = kwargs.get("instructions")
        return plain_items(items), dict(
            model=model, tools=_tools(kwargs.get("tools")), max_tokens=reserve,
            system=instructions if isinstance(instructions, str) and instructions else None,
            session_id=self.session_id, window=self._call_window(model, reserve),
            fmt=Format.RESPONSES)

    def _observe(self, model: Any, result: CompactionResult | None, provider: int) -> None:
        """Calibrate ``model`` from the provider's input count for the request ``result``
        sent (our estimate: ``result.sent_tokens``, the recalled block's tokens included
        when recall placed one in what was sent)."""
        if self.calibrate and result is not None and isinstance(model, str) and provider > 0:
            self.calibrator.observe(model, result.sent_tokens, provider)


# --------------------------------------------------------------------------- one call
def _tap_async(stream: Any, on_item: Callable[[Any], bool]) -> Any:
    """``stream`` (the SDK's ``AsyncStream``) made to show every item to ``on_item`` as the
    caller reads it; an item for which ``on_item`` returns False is not passed on. The
    object stays the SDK's own; a stream without the SDK's iterator is returned as is."""
    inner = getattr(stream, "_iterator", None)
    if inner is None:
        return stream

    async def tapped() -> AsyncIterator[Any]:
        try:
            async for item in inner:
                if on_item(item):
                    yield item
        finally:
            await inner.aclose()

    stream._iterator = tapped()
    return stream


def _tap_sync(stream: Any, on_item: Callable[[Any], bool]) -> Any:
    """:func:`_tap_async` for the SDK's ``Stream``."""
    inner = getattr(stream, "_iterator", None)
    if inner is None:
        return stream

    def tapped() -> Iterator[Any]:
        try:
            for item in inner:
                if on_item(item):
                    yield item
        finally:
            inner.close()

    stream._iterator = tapped()
    return stream


class _Call:
    """One wrapped call, between the caller and the SDK: what to compact (``args``), the
    keyword arguments to forward (``kwargs``, compacted by :meth:`compacted`), and what to
    do with what the SDK returns (:meth:`finish`: calibrate, tap a stream).

    ``chat``: a chat call (``messages``, ``usage.prompt_tokens``, the ``include_usage``
    stream option) rather than a Responses call (``input``, ``usage.input_tokens``, the
    ``response.completed`` event)."""

    def __init__(self, owner: _Base, kwargs: dict[str, Any], *, chat: bool,
                 helper: bool = False) -> None:
        self.owner = owner
        self.chat = chat
        self.args = owner._chat_args(kwargs) if chat else owner._responses_args(kwargs)
        self.kwargs = kwargs
        self.result: CompactionResult | None = None
        self.added_usage = False
        #: a streamed call: ``stream=True``, or the SDK's ``stream(...)`` helper
        self.streamed = helper or kwargs.get("stream") is True

    def compacted(self, r: CompactionResult) -> None:
        """Take the compaction result: the history to forward, pin flags stripped."""
        self.result = self.owner.last_result = r
        self.kwargs = {**self.kwargs,
                       "messages" if self.chat else "input": strip_metadata(r.to_send())}

    def forward(self) -> dict[str, Any]:
        """The keyword arguments to forward (a streamed chat call asks for the usage)."""
        if self.chat and self.streamed:
            self.kwargs, self.added_usage = with_stream_usage(self.kwargs)
        return self.kwargs

    def finish(self, got: Any, tap: Callable[[Any, Callable[[Any], bool]], Any]) -> Any:
        """What the SDK returned, after calibrating from its usage (a stream: tapped, so
        the usage calibrates when the caller reads it)."""
        if self.streamed:
            return tap(got, self._on_chunk if self.chat else self._on_event)
        usage = getattr(got, "usage", None)
        self._observe(chat_input_tokens(usage) if self.chat else responses_input_tokens(usage))
        return got

    def _observe(self, provider: int) -> None:
        self.owner._observe(self.kwargs.get("model"), self.result, provider)

    def _on_chunk(self, chunk: Any) -> bool:
        """A streamed chat chunk: the one carrying ``usage`` calibrates; when the wrapper
        added ``include_usage``, a usage-only chunk (no ``choices``) is not passed on, so
        the caller reads what it asked for."""
        usage = getattr(chunk, "usage", None)
        if usage is None:
            return True
        self._observe(chat_input_tokens(usage))
        return not (self.added_usage and not getattr(chunk, "choices", None))

    def _on_event(self, event: Any) -> bool:
        """A streamed Responses event: the final one's response (``response.completed`` /
        ``response.incomplete``) carries the usage that calibrates."""
        if getattr(event, "type", None) in ("response.completed", "response.incomplete"):
            usage = getattr(getattr(event, "response", None), "usage", None)
            if usage is not None:
                self._observe(responses_input_tokens(usage))
        return True


# --------------------------------------------------------------------------- resources
class _Passthrough:
    """A resource of the wrapped client (``client.chat``) with some attributes replaced;
    every other attribute is the resource's."""

    def __init__(self, inner: Any, **replaced: Any) -> None:
        self._inner = inner
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":   # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)


class _Resource(_Passthrough):
    """An SDK resource whose calls a wrapper compacts (``chat``: chat completions, else
    Responses)."""

    def __init__(self, owner: _Base, inner: Any, *, chat: bool) -> None:
        super().__init__(inner)
        self._owner: Any = owner
        self._chat = chat


# --------------------------------------------------------------------------- async
class CompactingOpenAI(_Base):
    """``openai.AsyncOpenAI`` with compaction before every Chat Completions and Responses
    call.

    ``await client.chat.completions.create(**kwargs)`` compacts ``kwargs["messages"]``
    (the OpenAI chat format, system/developer messages included; ``tools`` counted,
    ``max_completion_tokens`` or ``max_tokens`` reserved) and ``await
    client.responses.create(**kwargs)`` compacts ``kwargs["input"]`` (Responses items;
    ``instructions`` counted as the system prompt, ``max_output_tokens`` reserved). Pin
    flags are stripped, every other argument is forwarded unchanged, and the SDK's own
    object comes back (``ChatCompletion``, ``Response``, or with ``stream=True`` the SDK's
    ``AsyncStream``). ``parse`` (structured outputs) compacts as ``create`` does, and the
    SDK's ``stream(...)`` helpers compact on entry and yield the SDK's helper streams. A
    Responses call with ``previous_response_id`` or ``conversation``, or a string
    ``input``, is forwarded uncompacted (the provider holds that history). Any other
    attribute is the wrapped client's (``client.models``, ``client.embeddings``, ``client.api_key``...).

    Self-calibration: the provider's input count of each response (``usage.prompt_tokens``
    / ``usage.input_tokens``; in a stream, the chunk or ``response.completed`` event that
    carries it) is compared with our estimate of that request, and the per-model fit
    ``provider ~= slope x estimate + offset`` (:class:`Calibrator`) turns the provider's
    window into the window, in our tokens, handed to the compactor. A streamed chat call
    asks for ``stream_options={"include_usage": True}`` when the caller did not set
    ``include_usage``, and then does not pass on the usage-only chunk that adds.

    Args:
        client: the ``openai.AsyncOpenAI`` to wrap.
        compactor: the :class:`~compactor.MessageCompactor` (default: offline summaries).
        session_id: the compactor session of this conversation (None: the compactor's
            default session).
        window: the provider's context window, in provider tokens (default: the
            compactor's ``window``, else its model/tier window).
        calibrate: apply and update the correction factor.
        calibrator: share one :class:`Calibrator` between wrappers (default: a new one).

    ``with_options(...)`` (and its alias ``copy``) returns a wrapper of the re-optioned
    client sharing this one's compactor, session and calibrator.

    Raises:
        ConfigError: ``window`` not a positive integer, ``session_id`` not a string.
        (From the calls) InvalidHistoryError, ContextOverflowError, ConfigError from the
        compactor, before any request is sent; the SDK's own errors for the call.
    """

    def __init__(self, client: Any, compactor: MessageCompactor | None = None, *,
                 session_id: str | None = None, window: int | None = None,
                 calibrate: bool = True, calibrator: Calibrator | None = None) -> None:
        super().__init__(client, compactor, session_id=session_id, window=window,
                         calibrate=calibrate, calibrator=calibrator)
        self.chat = _Passthrough(client.chat, completions=_AsyncResource(
            self, client.chat.completions, chat=True))
        self.responses = _AsyncResource(self, client.responses, chat=False)

    def with_options(self, **options: Any) -> "CompactingOpenAI":
        """``AsyncOpenAI.with_options(**options)``, still compacting: a wrapper of the
        re-optioned client sharing this one's compactor, session and calibrator."""
        return CompactingOpenAI(self._client.with_options(**options), self.compactor,
                                **self._twin_kwargs())

    copy = with_options

    async def _compact(self, args: tuple[list[Any], dict[str, Any]]) -> CompactionResult:
        history, kw = args
        return await self.compactor.compact_if_needed(history, **kw)




class _AsyncResource(_Resource):
    """``client.chat.completions`` or ``client.responses`` with ``create`` and ``parse``
    compacting first; every other attribute is the SDK resource's."""

    async def _call(self, method: str, kwargs: dict[str, Any]) -> Any:
        call = _Call(self._owner, kwargs, chat=self._chat)
        if call.args is not None:
            call.compacted(await self._owner._compact(call.args))
        got = await getattr(self._inner, method)(**call.forward())
        return call.finish(got, _tap_async)

    async def create(self, **kwargs: Any) -> Any:
        """The SDK's ``create`` after compaction; returns the SDK's object
        (``ChatCompletion`` / ``Response``, or its ``AsyncStream`` with ``stream=True``)."""
        return await self._call("create", kwargs)

    async def parse(self, **kwargs: Any) -> Any:
        """The SDK's ``parse`` (structured outputs) after compaction; returns the SDK's
        ``ParsedChatCompletion`` / ``ParsedResponse``."""
        return await self._call("parse", kwargs)

    def stream(self, **kwargs: Any) -> "_AsyncStreamManager":
        """The SDK's ``stream(...)`` helper after compaction: an async context manager
        that yields the SDK's own ``AsyncChatCompletionStream`` / ``AsyncResponseStream``."""
        return _AsyncStreamManager(self, kwargs)


class _AsyncStreamManager:
    """What :meth:`_AsyncResource.stream` returns: compacts on entry, then enters the
    SDK's own stream manager; its raw stream is tapped for the usage."""

    def __init__(self, resource: _AsyncResource, kwargs: dict[str, Any]) -> None:
        self._resource = resource
        self._kwargs = kwargs
        self._manager: Any = None

    async def __aenter__(self) -> Any:
        res = self._resource
        call = _Call(res._owner, self._kwargs, chat=res._chat, helper=True)
        if call.args is not None:
            call.compacted(await res._owner._compact(call.args))
        self._manager = res._inner.stream(**call.forward())
        stream = await self._manager.__aenter__()
        raw = getattr(stream, "_raw_stream", None)
        if raw is not None:
            call.finish(raw, _tap_async)
        return stream

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._manager.__aexit__(*exc)


# --------------------------------------------------------------------------- sync
class CompactingSyncOpenAI(_Base):
    """``openai.OpenAI`` (the synchronous client) with compaction before every call: the
    same surface, arguments, results and calibration as :class:`CompactingOpenAI`, for
    agents that do not use asyncio.

    The compaction runs through :meth:`MessageCompactor.compact_sync` (the compactor's own
    event loop in a background thread), so the wrapper works in a plain function and in
    code that runs inside an event loop (it then blocks that loop while it waits, as the
    synchronous SDK's HTTP call does). Use one style per compactor: give the async and
    the sync wrappers separate compactors.

    Args:
        client: the ``openai.OpenAI`` to wrap.
        compactor, session_id, window, calibrate, calibrator: as for
            :class:`CompactingOpenAI`.
        compact_timeout_s: longest wait for one compaction, seconds (None: wait).

    Raises:
        ConfigError: ``window`` not a positive integer, ``session_id`` not a string,
            ``compact_timeout_s`` not positive.
        (From the calls) what :class:`CompactingOpenAI` raises; TimeoutError when a
        compaction took longer than ``compact_timeout_s``.
    """

    def __init__(self, client: Any, compactor: MessageCompactor | None = None, *,
                 session_id: str | None = None, window: int | None = None,
                 calibrate: bool = True, calibrator: Calibrator | None = None,
                 compact_timeout_s: float | None = None) -> None:
        if compact_timeout_s is not None and not compact_timeout_s > 0:
            raise ConfigError(f"compact_timeout_s must be > 0 seconds or None, got "
                              f"{compact_timeout_s!r}", field="compact_timeout_s")
        super().__init__(client, compactor, session_id=session_id, window=window,
                         calibrate=calibrate, calibrator=calibrator)
        self.compact_timeout_s = compact_timeout_s
        self.chat = _Passthrough(client.chat, completions=_SyncResource(
            self, client.chat.completions, chat=True))
        self.responses = _SyncResource(self, client.responses, chat=False)

    def with_options(self, **options: Any) -> "CompactingSyncOpenAI":
        """``OpenAI.with_options(**options)``, still compacting (see
        :meth:`CompactingOpenAI.with_options`)."""
        return CompactingSyncOpenAI(self._client.with_options(**options), self.compactor,
                                    compact_timeout_s=self.compact_timeout_s,
                                    **self._twin_kwargs())

    copy = with_options

    def _compact(self, args: tuple[list[Any], dict[str, Any]]) -> CompactionResult:
        history, kw = args
        return self.compactor.compact_sync(history, timeout_s=self.compact_timeout_s, **kw)


class _SyncResource(_Resource):
    """:class:`_AsyncResource` for the sync client."""

    def _call(self, method: str, kwargs: dict[str, Any]) -> Any:
        call = _Call(self._owner, kwargs, chat=self._chat)
        if call.args is not None:
            call.compacted(self._owner._compact(call.args))
        return call.finish(getattr(self._inner, method)(**call.forward()), _tap_sync)

    def create(self, **kwargs: Any) -> Any:
        """The SDK's ``create`` after compaction; returns the SDK's object
        (``ChatCompletion`` / ``Response``, or its ``Stream`` with ``stream=True``)."""
        return self._call("create", kwargs)

    def parse(self, **kwargs: Any) -> Any:
        """The SDK's ``parse`` (structured outputs) after compaction; returns the SDK's
        ``ParsedChatCompletion`` / ``ParsedResponse``."""
        return self._call("parse", kwargs)

    def stream(self, **kwargs: Any) -> "_SyncStreamManager":
        """The SDK's ``stream(...)`` helper after compaction: a context manager that
        yields the SDK's own ``ChatCompletionStream`` / ``ResponseStream``."""
        return _SyncStreamManager(self, kwargs)


class _SyncStreamManager:
    """:class:`_AsyncStreamManager` for the sync client."""

    def __init__(self, resource: _SyncResource, kwargs: dict[str, Any]) -> None:
        self._resource = resource
        self._kwargs = kwargs
        self._manager: Any = None

    def __enter__(self) -> Any:
        res = self._resource
        call = _Call(res._owner, self._kwargs, chat=res._chat, helper=True)
        if call.args is not None:
            call.compacted(res._owner._compact(call.args))
        self._manager = res._inner.stream(**call.forward())
        stream = self._manager.__enter__()
        raw = getattr(stream, "_raw_stream", None)
        if raw is not None:
            call.finish(raw, _tap_sync)
        return stream

    def __exit__(self, *exc: Any) -> Any:
        return self._manager.__exit__(*exc)


__all__ = ["SERVER_STATE_ARGS", "CalibrationState", "Calibrator", "CompactingOpenAI",
           "CompactingSyncOpenAI", "chat_input_tokens", "plain_items", "responses_input_tokens"]
