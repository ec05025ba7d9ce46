"""The summarizer that calls the same upstream as the agent, with the agent's own
credentials and a cheap model.

The proxy serves many callers (and tenants) through one :class:`MessageCompactor`, so the
credentials of a summary call cannot be fixed when the summarizer is built: the request
handler puts the current call's upstream and credential headers in a context variable
(:func:`caller_context`) before it compacts, and :class:`UpstreamSummarizer` reads them
there (a context variable follows the compaction into the tasks and threads it starts).
A session's compaction therefore runs on the credentials of the call that triggered it --
the session's own tenant (see ``_identity``). Without a caller in context (or for a
format with no summary model) it raises :class:`SummarizerError`, and the compactor falls
back to its offline summarizer, as for any failed summary.

The Anthropic call is built here on httpx (no SDK needed); the OpenAI one is
``compactor.adapters.openai_http.OpenAIChatSummarizer`` on the proxy's HTTP client. Both
use the adapters' prompt, retry policy (``summarizer_retry`` records) and error redaction.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import httpx

from .._errors import SummarizerError
from .._format import Format
from .._sink import LedgerSink
from .._summary import SummaryRequest
from ..adapters._prompt import DEFAULT_PROMPT, SYSTEM_PROMPT, local_merge, render
from ..adapters._resilience import (CallContext, ProviderCallError, RetryPolicy,
                                    call_with_retries, post_json)
from ._identity import CREDENTIAL_HEADERS

#: The default summary models per wire format (cheap ones; ``--summary-model`` overrides).
DEFAULT_SUMMARY_MODELS = {Format.ANTHROPIC: "claude-haiku-4-5", Format.OPENAI: "gpt-4o-mini"}
#: Headers of the caller's request copied onto an Anthropic summary call.
ANTHROPIC_COPY = (*CREDENTIAL_HEADERS, "anthropic-version", "anthropic-beta")


@dataclass(frozen=True)
class Caller:
    """The call being compacted: its format, the upstream it goes to, and the caller's
    headers a summary call may reuse (credentials; never logged -- ``repr`` hides them).

    Attributes:
        fmt: the wire format.
        upstream: the upstream base URL (Anthropic: without ``/v1``; OpenAI: with it).
        headers: lower-case header name -> value, the credentials among them.
        agent_id / session_id: for the ledger records of retries.
    """

    fmt: Format
    upstream: str
    headers: Mapping[str, str] = field(repr=False)
    agent_id: str | None = None
    session_id: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential values, for scrubbing error texts."""
        out = []
        for h in CREDENTIAL_HEADERS:
            v = self.headers.get(h)
            if v:
                out.append(v)
                if " " in v:
                    out.append(v.split(" ", 1)[1])
        return tuple(out)


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "compactor_proxy_caller", default=None)


@contextmanager
def caller_context(caller: Caller) -> Iterator[None]:
    """Make ``caller`` the current call for :class:`UpstreamSummarizer` inside the block."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)


class UpstreamSummarizer:
    """A :class:`~compactor.Summarizer` that asks the caller's own upstream for the summary.

    Args:
        client: the proxy's ``httpx.AsyncClient``.
        models: summary model per format (default :data:`DEFAULT_SUMMARY_MODELS`).
        max_tokens: most output tokens of one summary call.
        input_window: the largest span one call takes, tokens.
        timeout_s: one call's timeout, seconds.
        retry: the retry policy (default: 2 attempts, 30 s in all).
        sink: receives ``summarizer_retry`` events.
    """

    name = "proxy-upstream"

    def __init__(self, client: httpx.AsyncClient, *,
                 models: Mapping[Format, str] | None = None, max_tokens: int = 2048,
                 input_window: int = 100_000, timeout_s: float = 60.0,
                 retry: RetryPolicy | None = None, sink: LedgerSink | None = None) -> None:
        self.client = client
        self.models = dict(DEFAULT_SUMMARY_MODELS if models is None else models)
        self.max_tokens = max_tokens
        self.input_window = input_window
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy(attempts=2, deadline_s=30.0)
        self.sink = sink

    def __repr__(self) -> str:
        return f"UpstreamSummarizer(models={ {f.value: m for f, m in self.models.items()} })"

    async def summarize(self, request: SummaryRequest) -> str:
        """The upstream model's summary of ``request``.

        Raises:
            SummarizerError: no caller in context, or no model for its format.
            ProviderCallError: the call failed after the retries allowed, or its answer
                had no text.
        """
        merged = local_merge(request)
        if merged is not None:
            return merged
        caller = _CALLER.get()
        if caller is None:
            raise SummarizerError("no caller in context: the proxy summarizer runs only "
                                  "inside a proxied call")
        model = self.models.get(caller.fmt)
        if not model:
            raise SummarizerError(f"no summary model for the {caller.fmt.value} format")
        if caller.fmt is Format.OPENAI:
            return await self._openai(caller, model, request)
        return await self._anthropic(caller, model, request)

    async def _openai(self, caller: Caller, model: str, request: SummaryRequest) -> str:
        from ..adapters.openai_http import OpenAIChatSummarizer

        auth = caller.headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else None
        inner = OpenAIChatSummarizer(caller.upstream, model, api_key=key, client=self.client,
                                     max_tokens=self.max_tokens, input_window=self.input_window,
                                     timeout_s=self.timeout_s, retry=self.retry, sink=self.sink,
                                     agent_id=caller.agent_id)
        return await inner.summarize(request)

    async def _anthropic(self, caller: Caller, model: str, request: SummaryRequest) -> str:
        headers = {h: caller.headers[h] for h in ANTHROPIC_COPY if caller.headers.get(h)}
        headers.setdefault("anthropic-version", "2023-06-01")
        headers["content-type"] = "application/json"
        body = {"model": model, "max_tokens": min(self.max_tokens, 2 * request.max_tokens),
                "system": SYSTEM_PROMPT,
                "messages": [{"role": "user", "content": render(DEFAULT_PROMPT, request)}]}
        secrets = caller.secrets
        url = f"{caller.upstream}/v1/messages"

        async def call() -> Any:
            return await post_json(self.client, url, body=body, headers=headers,
                                   timeout_s=self.timeout_s, secrets=secrets)

        ctx = CallContext(f"proxy-upstream/{model}", model, request.session_id,
                          caller.agent_id, secrets)
        data = await call_with_retries(call, policy=self.retry, sink=self.sink, context=ctx)
        usage = data.get("usage") or {}
        request.usage.append({"model": model,
                              "input_tokens": int(usage.get("input_tokens") or 0)
                              + int(usage.get("cache_creation_input_tokens") or 0)
                              + int(usage.get("cache_read_input_tokens") or 0),
                              "output_tokens": int(usage.get("output_tokens") or 0)})
        text = "".join(str(b.get("text", "")) for b in data.get("content") or []
                       if isinstance(b, Mapping) and b.get("type") == "text")
        if not text.strip():
            raise ProviderCallError("the response has no text content", kind="malformed")
        return text.strip()


__all__ = ["ANTHROPIC_COPY", "Caller", "DEFAULT_SUMMARY_MODELS", "UpstreamSummarizer",
           "caller_context"]
