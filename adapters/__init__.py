"""Adapters: drop-in wrappers and model-backed summarizers, with retries and a fallback
chain that never fails the agent's call.

* ``compactor.adapters.anthropic_sdk`` -- ``CompactingAnthropic`` (wraps
  ``anthropic.AsyncAnthropic``) and ``AnthropicSummarizer``; needs the ``anthropic``
  package, so it is imported on demand.
* ``compactor.adapters.openai_http`` -- ``OpenAIChatSummarizer`` and ``compacting_router``
  (httpx only).
* ``compactor.adapters.openai_sdk`` -- ``CompactingOpenAI`` (wraps ``openai.AsyncOpenAI``)
  and ``CompactingSyncOpenAI`` (wraps ``openai.OpenAI``): chat completions and Responses
  calls compacted first (the ``[openai]`` extra).
* ``compactor.adapters.langchain`` -- ``CompactionMiddleware`` (a LangChain v1
  ``AgentMiddleware``) and the LangChain converters (the ``[langchain]`` extra).
* ``compactor.adapters.pydantic_ai`` -- ``CompactingHistoryProcessor``,
  ``CompactingCapability`` (which also places the recall block in the model request) and
  the Pydantic AI converters (the ``[pydantic-ai]`` extra).
* ``compactor.adapters.openai_agents`` -- ``CompactingSession`` (an OpenAI Agents SDK
  ``Session`` wrapping any session; the ``[openai-agents]`` extra).
* This module -- the resilience pieces both use: ``RetryPolicy``, ``FallbackChain``,
  ``resilient_compactor``, and the ``Calibrator``.
"""

from ._calibration import CalibrationState, Calibrator
from ._resilience import (RETRY_STATUSES, FallbackChain, ProviderCallError, RetryPolicy,
                          check_summary, parse_retry_after, redact, resilient_compactor)

__all__ = [
    "RETRY_STATUSES",
    "CalibrationState",
    "Calibrator",
    "FallbackChain",
    "ProviderCallError",
    "RetryPolicy",
    "check_summary",
    "parse_retry_after",
    "redact",
    "resilient_compactor",
]
