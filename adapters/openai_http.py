"""OpenAI-compatible adapter, httpx only (no ``openai`` package): a ``/chat/completions``
summarizer for any compatible endpoint (OpenAI, vLLM, Ollama, OpenRouter, llama.cpp...) and
a router wrapper that compacts before every routed call.

See ``docs/adapters/openai-compatible.md``.
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Mapping, Sequence

import httpx

from compactor._compactor import MessageCompactor
from compactor._errors import ConfigError
from compactor._format import Format, strip_metadata
from compactor._sink import LedgerSink
from compactor._summary import SummaryRequest

from ._prompt import DEFAULT_PROMPT, SYSTEM_PROMPT, check_template, finish, local_merge, prompt_for
from ._resilience import (CallContext, ProviderCallError, RetryPolicy, call_with_retries,
                          post_json)

#: ``async def route(messages, **kw) -> Any``: the model-router pattern.
Route = Callable[..., Awaitable[Any]]


def _check_url(base_url: str) -> str:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must be an http(s) URL such as "
                          f"'https://api.openai.com/v1', got {base_url!r}", field="base_url")
    return base_url.rstrip("/")


class OpenAIChatSummarizer:
    """A :class:`~compactor.Summarizer` that calls ``POST {base_url}/chat/completions``.

    ``base_url`` includes the API version path, as the OpenAI SDK's does
    (``https://api.openai.com/v1``, ``http://localhost:11434/v1``...). The API key, when
    given, is sent as ``Authorization: Bearer ...`` and never recorded. Retries follow
    ``retry`` (408/409/429/5xx, connection errors, timeouts; ``retry-after`` honoured);
    a non-JSON body, a response without ``choices[0].message.content`` text, or an empty
    text is a failure (``kind="malformed"``), not retried. Usage (``prompt_tokens``,
    ``completion_tokens``) is appended to ``SummaryRequest.usage``.

    Args:
        base_url: the endpoint's base URL.
        model: the model name sent.
        api_key: the bearer token, or None (local servers).
        client: an ``httpx.AsyncClient`` to reuse (default: one owned by this object;
            close it with :meth:`aclose`).
        max_tokens: most output tokens one call may produce.
        prompt: template with ``{transcript}`` (required) and ``{budget}``.
        input_window: the largest span one call takes, in tokens.
        timeout_s: the timeout of one call, seconds.
        retry: the :class:`RetryPolicy`.
        sink: receives ``summarizer_retry`` events.
        agent_id: reported with every event.

    Raises:
        ConfigError: a bad ``base_url``, ``model``, ``prompt`` or a non-positive number.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 client: httpx.AsyncClient | None = None, max_tokens: int = 2048,
                 prompt: str = DEFAULT_PROMPT, input_window: int = 100_000,
                 timeout_s: float = 60.0, retry: RetryPolicy | None = None,
                 sink: LedgerSink | None = None, agent_id: str | None = None) -> None:
        self.base_url = _check_url(base_url)
        if not isinstance(model, str) or not model:
            raise ConfigError("model must be a non-empty model name", field="model")
        for name, v in (("max_tokens", max_tokens), ("input_window", input_window),
                        ("timeout_s", timeout_s)):
            if not v > 0:
                raise ConfigError(f"{name} must be > 0, got {v!r}", field=name)
        self.model = model
        self._api_key = api_key
        self._own_client = client is None
        self.client = client or httpx.AsyncClient()
        self.max_tokens = max_tokens
        self.prompt = check_template(prompt)
        self.input_window = input_window
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.sink = sink
        self.agent_id = agent_id
        self.secrets: tuple[str, ...] = (api_key,) if api_key else ()
        self.name = f"openai-http/{model}"

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIChatSummarizer(base_url={self.base_url!r}, model={self.model!r})"

    async def aclose(self) -> None:
        """Close the HTTP client, if this object created it."""
        if self._own_client:
            await self.client.aclose()

    async def _post(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return await post_json(self.client, f"{self.base_url}/chat/completions", body=body,
                               headers=headers, timeout_s=self.timeout_s,
                               secrets=(self._api_key,) if self._api_key else ())

    async def summarize(self, request: SummaryRequest) -> str:
        """The model's summary of ``request``.

        Raises:
            ProviderCallError: the call failed after the retries allowed, or the response
                is malformed or empty (``kind="malformed"``).
        """
        merged = local_merge(request)
        if merged is not None:
            return merged
        body = {"model": self.model,
                "max_tokens": min(self.max_tokens, 2 * request.max_tokens),
                "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                             {"role": "user", "content": prompt_for(self.prompt, request)}]}
        ctx = CallContext(self.name, self.model, request.session_id, self.agent_id, self.secrets)
        data = await call_with_retries(functools.partial(self._post, body), policy=self.retry,
                                       sink=self.sink, context=ctx)
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise ProviderCallError("malformed response: no choices[0].message.content",
                                    kind="malformed") from e
        usage = data.get("usage") or {}
        request.usage.append({"model": self.model,
                              "input_tokens": int(usage.get("prompt_tokens") or 0),
                              "output_tokens": int(usage.get("completion_tokens") or 0)})
        if not isinstance(text, str) or not text.strip():
            raise ProviderCallError("the response has no text content", kind="malformed")
        return finish(self.prompt, request, text.strip())


def compacting_router(route: Route, compactor: MessageCompactor | None = None, *,
                      session_id: str | None = None, model: str | None = None,
                      window: int | None = None) -> Route:
    """Wrap ``async def route(messages, **kw)`` so it receives compacted messages.

    The returned coroutine function takes the same arguments. It compacts ``messages``
    (OpenAI chat format, the system prompt included) with ``compactor``, counting
    ``kw["tools"]`` and reserving ``kw["max_tokens"]`` (or ``kw["max_completion_tokens"]``),
    strips pin flags, and calls ``route(compacted, **kw)`` with every keyword unchanged;
    it returns what ``route`` returns. With question-time recall on (a compactor with a
    store and ``recall_share > 0``), ``compacted`` is ``CompactionResult.to_send()``: the
    recalled block is a user message next to the newest user turn (``docs/recall.md``),
    for this call only. The window comes from ``window`` (tokens), else the compactor's,
    else the model's tier: ``kw["model"]`` or ``model``. The last result is the returned
    function's ``last_result``.

    Raises (from the returned function): InvalidHistoryError, ContextOverflowError,
    ConfigError as ``MessageCompactor.compact_if_needed`` does; whatever ``route`` raises.
    """
    if not callable(route):
        raise ConfigError("route must be an async callable route(messages, **kw)", field="route")
    c = compactor or MessageCompactor()

    @functools.wraps(route)
    async def compacting(messages: Sequence[Mapping[str, Any]], **kw: Any) -> Any:
        reserve = kw.get("max_tokens", kw.get("max_completion_tokens"))
        r = await c.compact_if_needed(messages, model=kw.get("model") or model,
                                      tools=kw.get("tools"), max_tokens=reserve,
                                      session_id=session_id, window=window, fmt=Format.OPENAI)
        compacting.last_result = r  # type: ignore[attr-defined]
        # the history, with question-time recall's block when one was placed
        return await route(strip_metadata(r.to_send()), **kw)

    compacting.last_result = None  # type: ignore[attr-defined]
    return compacting


__all__ = ["OpenAIChatSummarizer", "Route", "compacting_router"]
