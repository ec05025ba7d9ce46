"""What the OpenAI Agents SDK tests share: the agent (one function tool), a responder for
conversations of many short runs, the Agents SDK model classes pointed at the loopback
server, and the checks on a finished run.

Imported by its unique name (several test folders have a conftest.py)."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel,
                    function_tool)
from openai import AsyncOpenAI

from compactor.ledger import read_records
from compactor.testing import CHAT_PATH, RESPONSES_PATH, RecordedRequest, Reply

from frameworks_support import MAX_TOKENS, SYSTEM, Harness, ticket_report


@function_tool
def lookup(ticket: str) -> str:
    """Look up a support ticket by its id (e.g. T-0001)."""
    return ticket_report(ticket)


def chat_model(url: str) -> OpenAIChatCompletionsModel:
    """``gpt-4o`` through chat completions on the loopback server at ``url``."""
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0,
                         timeout=30.0)
    return OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client)


def responses_model(url: str) -> OpenAIResponsesModel:
    """``gpt-4o`` through the Responses API (the SDK's default model class) on the
    loopback server at ``url``."""
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0,
                         timeout=30.0)
    return OpenAIResponsesModel(model="gpt-4o", openai_client=client)


def make_agent(model: Any, **settings: Any) -> Agent:
    """The support agent: the shared system prompt, the ``lookup`` tool, 512 output
    tokens (and any other ``ModelSettings`` given)."""
    return Agent(name="support", instructions=SYSTEM, model=model, tools=[lookup],
                 model_settings=ModelSettings(max_tokens=MAX_TOKENS, **settings))


def _answers_a_call(body: Any) -> bool:
    """Whether the request's last item answers a tool call (chat ``tool`` message or a
    Responses ``function_call_output``)."""
    items = (body.get("messages") or body.get("input")) if isinstance(body, dict) else None
    last = items[-1] if isinstance(items, list) and items else {}
    return last.get("role") == "tool" or last.get("type") == "function_call_output"


@dataclass
class OneLookupPerQuestion:
    """The responder of a conversation of short runs: a question is answered by one
    ``lookup`` call (the next ticket), then, once its output is in, by a line of text."""

    reasoning: bool = False
    _n: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: RecordedRequest) -> Reply:
        if _answers_a_call(request.json):
            return Reply(text="Done: the ticket is open.")
        with self._lock:
            n = next(self._n)
        return Reply(text=f"Looking up ticket T-{n:04d}.",
                     tool_uses=(("lookup", {"ticket": f"T-{n:04d}"}),),
                     reasoning=f"The user asks about ticket T-{n:04d}." if self.reasoning
                     else None)


def model_requests(h: Harness) -> list[RecordedRequest]:
    """The model calls the agent made (chat completions and Responses)."""
    return [r for r in h.server.requests if r.path in (CHAT_PATH, RESPONSES_PATH)]


def request_items(r: RecordedRequest) -> list[Any]:
    """The history a model call carried (chat ``messages`` or Responses ``input``)."""
    return r.json.get("messages") or r.json.get("input") or []


def ledger_compactions(h: Harness, session_id: str) -> list[dict[str, Any]]:
    """The compaction records of the JSONL ledger (the ledger closed first), after checking
    each is this session's and that they are as many as the session's compactions and as
    the results that said ``compacted``."""
    h.ledger.close()
    records = [r for r in read_records(h.ledger_path) if r.get("event") == "compaction"]
    assert all(r["session_id"] == session_id for r in records)
    assert len(records) == h.compactor.session(session_id).compaction_count
    assert len(records) == sum(r.compacted for r in h.results)
    return records
