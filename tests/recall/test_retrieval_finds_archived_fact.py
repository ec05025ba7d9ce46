"""Retrieval finds the archived span holding the fact a question asks about."""

from __future__ import annotations

from compactor._format import Format
from compactor._recall import retrieve
from compactor._store import content_hash

from conftest import CONFIG_CALL, CONFIG_RESULT, REGION_ORDINAL, archive, fact_history


def test_question_recalls_the_message_stating_the_fact(store, index, counter):
    """A question about the staging database's region recalls ordinal 6, which states it."""
    archive(store, "s", fact_history())
    b = retrieve(store, "s", "Which region does the staging database live in?",
                 budget_tokens=400, counter=counter, fmt=Format.ANTHROPIC, index=index)
    assert REGION_ORDINAL in b.ordinals
    assert "eu-north-5" in b.text
    assert b.text.startswith('<recalled_context archive_refs="')
    assert b.text.endswith("</recalled_context>")


def test_best_match_survives_a_budget_for_one_message(store, index, counter):
    """With room for about one message, the message that states the fact is the one kept."""
    archive(store, "s", fact_history())
    b = retrieve(store, "s", "staging database backup window", budget_tokens=100,
                 counter=counter, fmt=Format.ANTHROPIC, index=index)
    assert b.ordinals == (REGION_ORDINAL,)


def test_fact_in_a_tool_result_comes_back_with_its_tool_use(store, index, counter):
    """A merchant id held by the tool_result at ordinal 11 is recalled together with the
    tool_use at ordinal 10 that produced it, both labelled with the same id."""
    archive(store, "s", fact_history())
    b = retrieve(store, "s", "What is the merchant_id in the payments config?",
                 budget_tokens=400, counter=counter, fmt=Format.ANTHROPIC, index=index)
    assert {CONFIG_CALL, CONFIG_RESULT} <= set(b.ordinals)
    assert "ACME-77812" in b.text
    assert "(tool_use read_file id=toolu_cfg01)" in b.text
    assert "(tool_result for id=toolu_cfg01)" in b.text


def test_what_is_in_the_context_is_not_recalled_again(store, index, counter):
    """Ordinals passed as in the context are left out of the block."""
    archive(store, "s", fact_history())
    b = retrieve(store, "s", "Which region does the staging database live in?",
                 exclude_ordinals={REGION_ORDINAL}, budget_tokens=400, counter=counter,
                 fmt=Format.ANTHROPIC, index=index)
    assert REGION_ORDINAL not in b.ordinals
    assert "eu-north-5" not in b.text


def test_openai_parallel_calls_travel_as_one_unit(store, index, counter):
    """In OpenAI format a fact in the second tool message of a parallel batch brings the
    assistant message that opened both calls and the other result (ordinals 3, 4, 5)."""
    h = [
        {"role": "system", "content": "You are a release bot."},
        {"role": "user", "content": "Check both services."},
        {"role": "assistant", "content": "Checking."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "status", "arguments": '{"svc": "api"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "status", "arguments": '{"svc": "billing"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "api: healthy"},
        {"role": "tool", "tool_call_id": "call_b", "content": "billing: degraded, ticket OPS-5521"},
    ] + [m for k in range(10) for m in (
        {"role": "user", "content": f"status of service {k}?"},
        {"role": "assistant", "content": f"service {k} fine"})]
    archive(store, "o", h)
    b = retrieve(store, "o", "which ticket tracks the billing service?", budget_tokens=300,
                 counter=counter, fmt=Format.OPENAI, index=index)
    assert {3, 4, 5} <= set(b.ordinals)
    assert "OPS-5521" in b.text and "id=call_a" in b.text and "id=call_b" in b.text


def test_only_the_current_branch_is_recalled(store, index, counter):
    """After the agent rewrites ordinal 6, the old wording is no longer recalled; the new
    one is."""
    h = fact_history()
    archive(store, "s", h)
    index.update(store, "s")
    rewritten = {"role": "user", "content": "For the record: staging moved to region "
                                            "ap-south-9."}
    h2 = h[:REGION_ORDINAL] + [rewritten] + h[REGION_ORDINAL + 1:]
    # a branch: the same first 6 messages, then different content from ordinal 6 on
    from compactor._store import ArchiveNode, chain_id
    prev = ""
    nodes = []
    for i, m in enumerate(h2):
        hh = content_hash(m)
        nodes.append(ArchiveNode(i, hh, prev, m))
        prev = chain_id(prev, hh)
    store.append("s", nodes)
    b = retrieve(store, "s", "which region is staging in?", budget_tokens=400,
                 counter=counter, fmt=Format.ANTHROPIC, index=index)
    assert "ap-south-9" in b.text
    assert "eu-north-5" not in b.text
