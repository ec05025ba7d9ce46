"""LangChain conversion and the trim_messages strategy."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402

from compactor import Format, validate  # noqa: E402
from compactor.bench._data import load_dataset  # noqa: E402
from compactor.bench._lc import from_langchain, to_langchain  # noqa: E402
from compactor.bench._strategies import make_strategy  # noqa: E402
from compactor import HeuristicCounter  # noqa: E402
from builders import a_calls, a_text, a_user, o_calls  # noqa: E402


def test_anthropic_round_trip_parallel_calls() -> None:
    """An Anthropic history with parallel calls survives to_langchain/from_langchain exactly,
    with one ToolMessage per result and the calls on AIMessage.tool_calls."""
    call, res = a_calls("read_file", "grep", text="Reading.")
    msgs = [a_user("fix it"), call, res, a_text("done")]
    lc = to_langchain(msgs, Format.ANTHROPIC)
    assert [type(m) for m in lc] == [HumanMessage, AIMessage, ToolMessage, ToolMessage, AIMessage]
    assert [c["name"] for c in lc[1].tool_calls] == ["read_file", "grep"]
    assert from_langchain(lc, Format.ANTHROPIC) == msgs


def test_openai_round_trip() -> None:
    """An OpenAI history round-trips; arguments come back as the same JSON value."""
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
            *o_calls("search", "lookup"), {"role": "assistant", "content": "ok"}]
    back = from_langchain(to_langchain(msgs, Format.OPENAI), Format.OPENAI)
    for a, b in zip(msgs, back):
        if a.get("tool_calls"):
            a = {**a, "tool_calls": [{**c, "function": {**c["function"], "arguments":
                 json.loads(c["function"]["arguments"])}} for c in a["tool_calls"]]}
            b = {**b, "tool_calls": [{**c, "function": {**c["function"], "arguments":
                 json.loads(c["function"]["arguments"])}} for c in b["tool_calls"]]}
        assert a == b
    assert len(back) == len(msgs)


def test_trimmed_tool_message_maps_back_to_an_orphan() -> None:
    """Dropping the AIMessage but keeping its ToolMessage gives an orphan tool_result,
    which the validator reports."""
    call, res = a_calls("read_file")
    lc = to_langchain([a_user("go"), call, res, a_text("done")], Format.ANTHROPIC)
    back = from_langchain(lc[2:], Format.ANTHROPIC)
    assert "orphan_result" in {v.rule for v in validate(back, Format.ANTHROPIC)}


def test_tau_bench_round_trip(shared_data) -> None:
    """Every tau-bench conversation (Anthropic file) round-trips exactly."""
    ds = load_dataset(shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl")
    assert ds.fmt is Format.ANTHROPIC and ds.conversations[0].system
    for conv in ds.conversations:
        assert from_langchain(to_langchain(conv.messages, Format.ANTHROPIC),
                              Format.ANTHROPIC) == conv.messages


def test_trim_strategy_breaks_a_pair_and_is_counted() -> None:
    """With a window that fits a tool result but not its (large) call, trim_messages
    returns a history starting with an orphan tool_result; the adapter records the rule."""
    call, res = a_calls("write_file")
    call["content"][0]["input"] = {"text": "x" * 4000}
    msgs = [a_user("write it"), call, res, a_text("written"), a_user("and now?")]
    trim = make_strategy("trim_messages", HeuristicCounter())
    r = asyncio.run(trim.compact_if_needed(msgs, window=300, fmt=Format.ANTHROPIC,
                                           session_id="s"))
    assert r.compacted and r.messages[0] is not msgs[0]
    assert "orphan_result" in trim.checks[-1][0]
    human = make_strategy("trim_messages+human", HeuristicCounter())
    r2 = asyncio.run(human.compact_if_needed(msgs, window=300, fmt=Format.ANTHROPIC,
                                             session_id="s"))
    assert r2.messages == [msgs[-1]] and human.checks[-1] == (frozenset(), False)
