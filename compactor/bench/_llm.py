"""An LLM summarizer for the ``ours+llm`` strategy, configured from the environment.

It sends the shipped summarizers' prompt (``compactor.adapters._prompt``: the model fills
the checkpoint schema) and reads the answer the same way. Two wire protocols over ``httpx``
(a core dependency), no SDK needed:

* Anthropic Messages API when ``ANTHROPIC_API_KEY`` is set (``POST {ANTHROPIC_BASE_URL or
  https://api.anthropic.com}/v1/messages``);
* any OpenAI-compatible chat endpoint when ``OPENAI_BASE_URL`` is set (``POST
  {OPENAI_BASE_URL}/chat/completions``, ``OPENAI_API_KEY`` sent as a bearer token if set).

``COMPACTOR_BENCH_LLM_MODEL`` picks the model (default ``claude-haiku-4-5`` /
``gpt-4o-mini``). Without either variable the strategy is skipped with a note.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import httpx

from .._errors import SummarizerError
from .._summary import SummaryRequest

class LLMSummarizer:
    """Summarizes a span with one chat call (``summarize(req) -> str``).

    Args:
        provider: ``"anthropic"`` or ``"openai"`` (OpenAI-compatible chat completions).
        base_url: the API root (Anthropic: without ``/v1``; OpenAI: up to ``/v1``).
        model: the model name.
        api_key: the key (optional for a local OpenAI-compatible server).
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
        timeout: seconds per request.

    ``input_window`` (tokens) makes the compactor split larger spans into chunks.
    Usage is appended to ``req.usage`` as ``{"model", "input_tokens", "output_tokens"}``.
    """

    input_window = 60_000

    def __init__(self, provider: str, base_url: str, model: str, api_key: str | None = None,
                 *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 60.0) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.transport = transport
        self.timeout = timeout
        self.name = f"llm:{provider}:{model}"

    async def summarize(self, req: SummaryRequest) -> str:
        """The summary text.

        Raises:
            SummarizerError: the endpoint failed or answered without text (the compactor
                then falls back to the offline summarizer).
        """
        # the shipped summarizers' prompt and answer handling (compactor.adapters._prompt):
        # the model fills the same checkpoint schema as the offline summarizer
        from ..adapters._prompt import DEFAULT_PROMPT, SYSTEM_PROMPT, finish, prompt_for

        system = SYSTEM_PROMPT
        user = prompt_for(DEFAULT_PROMPT, req)
        if self.provider == "anthropic":
            url = f"{self.base_url}/v1/messages"
            headers = {"anthropic-version": "2023-06-01", "x-api-key": self.api_key or ""}
            body: dict[str, Any] = {"model": self.model, "max_tokens": req.max_tokens,
                                    "system": system,
                                    "messages": [{"role": "user", "content": user}]}
        else:
            url = f"{self.base_url}/chat/completions"
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            body = {"model": self.model, "max_tokens": req.max_tokens,
                    "messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": user}]}
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout) as c:
                r = await c.post(url, json=body, headers=headers)
                r.raise_for_status()
                data = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise SummarizerError(f"{self.name}: {type(e).__name__}: {e}") from e
        text, usage = _parse(self.provider, data)
        req.usage.append({"model": self.model, **usage})
        if not text.strip():
            raise SummarizerError(f"{self.name}: the response has no text")
        return finish(DEFAULT_PROMPT, req, text.strip())


def _parse(provider: str, data: Mapping[str, Any]) -> tuple[str, dict[str, int]]:
    if provider == "anthropic":
        text = "".join(b.get("text", "") for b in data.get("content") or []
                       if isinstance(b, Mapping) and b.get("type") == "text")
        u = data.get("usage") or {}
        return text, {"input_tokens": int(u.get("input_tokens", 0)),
                      "output_tokens": int(u.get("output_tokens", 0))}
    choices = data.get("choices") or [{}]
    text = str(((choices[0] or {}).get("message") or {}).get("content") or "")
    u = data.get("usage") or {}
    return text, {"input_tokens": int(u.get("prompt_tokens", 0)),
                  "output_tokens": int(u.get("completion_tokens", 0))}


#: Why ``ours+llm`` was skipped when nothing is configured.
NOT_CONFIGURED = ("skipped: no LLM configured; set ANTHROPIC_API_KEY (Anthropic) or "
                  "OPENAI_BASE_URL [+ OPENAI_API_KEY] (an OpenAI-compatible endpoint), and "
                  "optionally COMPACTOR_BENCH_LLM_MODEL")


def llm_from_env(env: Mapping[str, str] | None = None) -> tuple[LLMSummarizer | None, str]:
    """The configured LLM summarizer and a one-line note saying which (or why none)."""
    e = os.environ if env is None else env
    model = e.get("COMPACTOR_BENCH_LLM_MODEL")
    if e.get("ANTHROPIC_API_KEY"):
        s = LLMSummarizer("anthropic", e.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
                          model or "claude-haiku-4-5", e["ANTHROPIC_API_KEY"])
        return s, f"ours+llm: Anthropic Messages API, model {s.model}"
    if e.get("OPENAI_BASE_URL"):
        s = LLMSummarizer("openai", e["OPENAI_BASE_URL"], model or "gpt-4o-mini",
                          e.get("OPENAI_API_KEY"))
        return s, f"ours+llm: OpenAI-compatible endpoint {s.base_url}, model {s.model}"
    return None, NOT_CONFIGURED
