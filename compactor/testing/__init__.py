"""Test helpers shipped with the package: a loopback provider server.

:class:`LoopbackServer` is a real HTTP server on ``127.0.0.1`` (ephemeral port) that
speaks the Anthropic Messages API (JSON and SSE, ``count_tokens``), OpenAI chat
completions and the OpenAI Responses API (JSON and SSE, ``input_tokens``) closely enough
for the real SDKs, validates every request against the provider rules
(``server.violations``), records every request (credentials redacted) and injects
scripted faults (:class:`Fault`). See ``docs/testing.md``.

A pytest fixture, ``loopback_server``, lives in ``compactor.testing.pytest_plugin``
(add ``pytest_plugins = ["compactor.testing.pytest_plugin"]`` to your root conftest).
"""

from ._server import (CHAT_PATH, COUNT_TOKENS_PATH, MESSAGES_PATH, RESPONSES_INPUT_TOKENS_PATH,
                      RESPONSES_PATH, Fault, LoopbackServer, Responder, echo_responder,
                      http_date)
from ._wire import (PromptCache, ProviderTokenizer, RecordedRequest, ReferenceTokenizer, Reply,
                    RequestViolation, check_chat_request, check_messages_request,
                    check_responses_request)

__all__ = [
    "CHAT_PATH",
    "COUNT_TOKENS_PATH",
    "MESSAGES_PATH",
    "Fault",
    "LoopbackServer",
    "PromptCache",
    "ProviderTokenizer",
    "RESPONSES_INPUT_TOKENS_PATH",
    "RESPONSES_PATH",
    "RecordedRequest",
    "ReferenceTokenizer",
    "Reply",
    "RequestViolation",
    "Responder",
    "check_chat_request",
    "check_messages_request",
    "check_responses_request",
    "echo_responder",
    "http_date",
]
