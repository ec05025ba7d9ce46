"""cache_control markers nested in tool_result blocks count against the 4-breakpoint limit,
so marking the summary never adds a fifth."""

from __future__ import annotations

from compactor.adapters._caching import MAX_CACHE_BREAKPOINTS, cache_breakpoints, mark_summary


def test_breakpoints_inside_tool_results_count_against_the_limit():
    """cache_control markers on blocks nested in a tool_result count, so the summary's
    breakpoint is not added as a fifth."""
    summary = {"role": "user", "content": "<conversation_summary>\nearlier\n</conversation_summary>"}
    result = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": f"t{i}",
         "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}
        for i in range(3)]}
    body = {"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [summary, result]}
    assert cache_breakpoints(body) == 4
    out = mark_summary(body["messages"], body)
    assert cache_breakpoints({**body, "messages": out}) <= MAX_CACHE_BREAKPOINTS
    assert out[0] is summary
