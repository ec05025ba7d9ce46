"""A recall block never takes more tokens than its budget."""

from __future__ import annotations

from compactor._format import Format
from compactor._recall import retrieve
from compactor._tokens import HeuristicCounter, TiktokenCounter

from conftest import archive, fact_history


def test_block_fits_every_budget(store, index):
    """For budgets from 0 to 2,000 tokens, the block's text counted by the test's own
    counter is within the budget, and a larger budget never recalls fewer messages."""
    archive(store, "s", fact_history(60))
    index.update(store, "s")
    for counter in (HeuristicCounter(), TiktokenCounter()):
        last = 0
        for budget in (0, 40, 80, 120, 200, 400, 800, 2000):
            b = retrieve(store, "s", "database region config build staging", budget_tokens=budget,
                         counter=counter, fmt=Format.ANTHROPIC, index=index, update=False)
            assert counter.count(b.text) <= budget
            assert b.tokens == counter.count(b.text)
            assert len(b.ordinals) >= last
            last = len(b.ordinals)
        assert last >= 10   # 2,000 tokens hold many short routine turns


def test_an_oversized_tool_result_is_cut_around_the_fact(store, index, counter):
    """A 40,000-character tool result with the fact in its middle is recalled cut to the
    budget, the fact and both halves of the call/result pair kept."""
    noise = "line of build log output\n" * 800
    h = [{"role": "user", "content": "Run the build."},
         {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_b1",
                                            "name": "bash", "input": {"cmd": "make"}}]},
         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_b1",
                                       "content": noise + "FATAL: linker error in libzeta.so\n"
                                       + noise}]},
         {"role": "assistant", "content": [{"type": "text", "text": "The build failed."}]},
         {"role": "user", "content": "What did the linker complain about?"}]
    archive(store, "s", h)
    b = retrieve(store, "s", "which library did the linker error name", budget_tokens=300,
                 counter=counter, fmt=Format.ANTHROPIC, index=index)
    assert counter.count(b.text) <= 300
    assert {1, 2} <= set(b.ordinals)
    assert "libzeta.so" in b.text
    assert "id=toolu_b1" in b.text.split("(tool_result")[0]   # the call, before its result
