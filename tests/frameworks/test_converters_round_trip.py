"""The public converters of the LangChain and Pydantic AI adapters: provider dicts survive a
round trip through the framework's messages, the shapes are the frameworks' own, and a
missing extra is one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings

pytest.importorskip("langchain_core")
pytest.importorskip("pydantic_ai")

from langchain_core.messages import (AIMessage, HumanMessage, SystemMessage,  # noqa: E402
                                     ToolMessage)
from pydantic_ai.messages import (ModelRequest, ModelResponse, SystemPromptPart,  # noqa: E402
                                  ToolCallPart, ToolReturnPart, UserPromptPart)

from compactor import ConfigError, Format, validate  # noqa: E402
from compactor.adapters.langchain import (from_langchain, to_langchain,  # noqa: E402
                                          usage_input_tokens)
from compactor.adapters.pydantic_ai import from_pydantic_ai, to_pydantic_ai  # noqa: E402
from compactor.testing import LoopbackServer, ReferenceTokenizer, Reply  # noqa: E402

from builders import a_calls, a_text, a_user, o_calls  # noqa: E402
from test_properties import WORDS, anthropic_history, openai_history  # noqa: E402

pytestmark = pytest.mark.timeout(60)
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(anthropic_history(), WORDS)
def test_langchain_round_trips_anthropic_histories(msgs, system):
    """Any valid Anthropic history (parallel calls, errors, thinking, text after results)
    and its system prompt come back equal from to_langchain -> from_langchain."""
    lc = to_langchain(msgs, Format.ANTHROPIC, system=system)
    assert isinstance(lc[0], SystemMessage)
    assert from_langchain(lc, Format.ANTHROPIC) == (msgs, system)


@FAST
@given(openai_history())
def test_langchain_round_trips_openai_histories(msgs):
    """Any valid OpenAI chat history comes back equal (system messages stay in the list)."""
    assert from_langchain(to_langchain(msgs, "openai"), "openai") == (msgs, None)


@FAST
@given(anthropic_history(), WORDS)
def test_pydantic_ai_round_trips_anthropic_histories(msgs, system):
    """Any valid Anthropic history whose assistant turns are blocks comes back equal from
    to_pydantic_ai -> from_pydantic_ai, its system prompt as a SystemPromptPart."""
    pa = to_pydantic_ai(msgs, system=system)
    assert isinstance(pa[0], ModelRequest) and isinstance(pa[0].parts[0], SystemPromptPart)
    assert from_pydantic_ai(pa) == (msgs, system)


def test_langchain_shapes_are_what_the_chat_models_build():
    """A tool turn is one AIMessage with tool_calls and one ToolMessage per result (error
    status kept); several system messages become one list of text blocks."""
    call, res = a_calls("read_file", "grep", text="Reading.")
    res["content"][1]["is_error"] = True
    lc = to_langchain([a_user("fix it"), call, res, a_text("done")], Format.ANTHROPIC)
    assert [type(m) for m in lc] == [HumanMessage, AIMessage, ToolMessage, ToolMessage, AIMessage]
    assert [c["name"] for c in lc[1].tool_calls] == ["read_file", "grep"]
    assert [m.status for m in lc[2:4]] == ["success", "error"]
    msgs, system = from_langchain([SystemMessage("a"), SystemMessage("b"), *lc],
                                  Format.ANTHROPIC)
    assert system == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert validate(msgs, Format.ANTHROPIC) == []


def test_langchain_openai_style_ai_message_becomes_anthropic_blocks():
    """An AIMessage with string content and tool_calls (as ChatOpenAI builds it) becomes an
    Anthropic text block followed by tool_use blocks, and OpenAI tool_calls with JSON
    arguments."""
    ai = AIMessage("Checking.", tool_calls=[{"id": "c1", "name": "f", "args": {"x": 1}}])
    tool = ToolMessage("42", tool_call_id="c1", name="f")
    anth, _ = from_langchain([HumanMessage("q"), ai, tool], "anthropic")
    assert anth[1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}}]}
    assert anth[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "c1", "content": "42"}]}
    oai, _ = from_langchain([HumanMessage("q"), ai, tool], "openai")
    assert json.loads(oai[1]["tool_calls"][0]["function"]["arguments"]) == {"x": 1}
    assert oai[2] == {"role": "tool", "tool_call_id": "c1", "content": "42", "name": "f"}
    assert validate(oai, Format.OPENAI) == []


def test_langchain_rejects_unknown_types_and_formats_with_a_typed_error():
    """A message type with no provider role, or a format that does not exist, is a
    ConfigError naming the field."""
    from langchain_core.messages import FunctionMessage

    with pytest.raises(ConfigError) as e:
        from_langchain([HumanMessage("q"), FunctionMessage("x", name="f")], "anthropic")
    assert e.value.field == "messages" and "messages[1]" in str(e.value)
    with pytest.raises(ConfigError) as e:
        from_langchain([HumanMessage("q")], "gemini")
    assert e.value.field == "fmt"


def test_usage_input_tokens_is_the_providers_count_of_the_request():
    """usage_input_tokens of a real ChatAnthropic response equals what the server counted
    for that request (its tokenizer, not ours); a message without usage gives None."""
    from langchain_anthropic import ChatAnthropic

    with LoopbackServer(lambda r: Reply(text="hello")) as server:
        model = ChatAnthropic(model="claude-sonnet-4-6", base_url=server.url, api_key="k",
                              max_tokens=64, max_retries=0)
        ai = model.invoke([HumanMessage("count me " * 20)])
        body = server.requests[-1].json
    assert usage_input_tokens(ai) == ReferenceTokenizer().count(body)
    assert usage_input_tokens(HumanMessage("q")) is None


def test_pydantic_ai_shapes_keep_calls_with_returns():
    """A tool turn maps to a ModelResponse with ToolCallParts and a ModelRequest of
    ToolReturnParts named after their calls; an error result fails its outcome; a request
    of several parts, a response's JSON-string args and a system prompt part convert as the
    provider would see them."""
    call, res = a_calls("read_file", "grep")
    res["content"][0]["is_error"] = True
    pa = to_pydantic_ai([a_user("go"), call, res])
    assert [type(p) for p in pa[1].parts] == [ToolCallPart, ToolCallPart]
    assert [(p.tool_name, p.outcome) for p in pa[2].parts] == [("read_file", "failed"),
                                                                  ("grep", "success")]
    hand = [ModelRequest(parts=[SystemPromptPart("sys"), UserPromptPart("hi")]),
            ModelResponse(parts=[ToolCallPart("f", '{"a": 1}', tool_call_id="t1")]),
            ModelRequest(parts=[ToolReturnPart("f", {"rows": 2}, tool_call_id="t1"),
                                UserPromptPart("and?")])]
    msgs, system = from_pydantic_ai(hand)
    assert system == "sys"
    assert msgs == [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": '{"rows": 2}'},
                        {"type": "text", "text": "and?"}]}]
    assert validate(msgs, Format.ANTHROPIC) == []


def test_pydantic_ai_rejects_what_is_not_a_model_message():
    """A dict in a ModelMessage list, or an OpenAI tool role, is a ConfigError naming the
    field."""
    with pytest.raises(ConfigError) as e:
        from_pydantic_ai([ModelRequest(parts=[UserPromptPart("q")]), {"role": "user"}])
    assert e.value.field == "messages" and "messages[1]" in str(e.value)
    with pytest.raises(ConfigError):
        to_pydantic_ai(o_calls("f"))


@pytest.mark.parametrize("module, blocked, extra", [
    ("compactor.adapters.pydantic_ai", "pydantic_ai", "pydantic-ai"),
    ("compactor.adapters.langchain", "langchain_core", "langchain"),
    ("compactor.adapters.openai_agents", "agents", "openai-agents"),
])
def test_a_missing_framework_is_one_line_naming_the_extra(module, blocked, extra):
    """Importing an adapter without its framework raises MissingExtraError: one line naming
    the package and the extra to install."""
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "from compactor._optional import MissingExtraError\n"
            f"try:\n    import {module}\nexcept MissingExtraError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        f"compactor.adapters.{module.rsplit('.', 1)[1]} needs {blocked}, which is not "
        f"installed; fix: pip install 'agent-context-compactor[{extra}]'"]


def test_the_middleware_without_langchain_is_one_line_naming_the_extra():
    """CompactionMiddleware() without the langchain package (langchain-core alone) raises
    MissingExtraError naming the langchain extra."""
    code = ("import sys; sys.modules['langchain'] = None\n"
            "sys.modules['langchain.agents'] = None\n"
            "sys.modules['langchain.agents.middleware'] = None\n"
            "from compactor._optional import MissingExtraError\n"
            "from compactor.adapters.langchain import CompactionMiddleware, to_langchain\n"
            "try:\n    CompactionMiddleware()\nexcept MissingExtraError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        "CompactionMiddleware needs langchain, which is not installed; fix: "
        "pip install 'agent-context-compactor[langchain]'"]
