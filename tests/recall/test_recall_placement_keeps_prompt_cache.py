"""Placing a recall block leaves the cached prefix byte-identical, so the simulated prompt
cache reads exactly what it reads without recall."""

from __future__ import annotations

import copy

from compactor._format import Format
from compactor._recall import RecallBlock, place_recall
from compactor._store import canonical_json
from compactor.testing import PromptCache, ReferenceTokenizer

from conftest import fact_history


def _block(n: int) -> RecallBlock:
    text = (f'<recalled_context archive_refs="{n}">\n[{n}] user: recalled fact number {n} '
            + "with some words " * 30 + "\n</recalled_context>")
    return RecallBlock(text, (n,), 0, "q")


def _mark(messages, indices):
    """A client's breakpoints: ``cache_control`` on the last block of each message in
    ``indices`` (string contents written as one text block, as the client always does, so
    a message is the same bytes whether it carries a breakpoint or not)."""
    out = copy.deepcopy(list(messages))
    for m in out:
        if isinstance(m["content"], str):
            m["content"] = [{"type": "text", "text": m["content"]}]
    for i in indices:
        out[i]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return out


def _requests(recall: bool):
    """Three consecutive requests of one conversation (each adds an assistant answer and a
    user turn), with the breakpoints on the previous and the newest user turn."""
    h = fact_history(10)
    ends = [len(h) - 5, len(h) - 3, len(h) - 1]    # each request ends with a user turn
    out = []
    prev = None
    for k, end in enumerate(ends):
        work = h[:end]
        last = end - 1
        marked_history = _mark(work, [i for i in (prev, last) if i is not None])
        sent = place_recall(marked_history, Format.ANTHROPIC, _block(k)) if recall \
            else marked_history
        out.append({"model": "claude-x", "max_tokens": 100, "system": "sys",
                    "messages": sent})
        prev = last
    return out


def test_cache_reads_the_same_tokens_with_and_without_recall():
    """Over three requests the cache reads the same number of tokens with recall blocks
    placed as without (and reads something from the second request on)."""
    tok = ReferenceTokenizer()
    reads = {}
    for recall in (False, True):
        cache = PromptCache()
        reads[recall] = [cache.usage(r, tok.count(r), tok)[2] for r in _requests(recall)]
    assert reads[True] == reads[False]
    assert reads[False][0] == 0 and reads[False][1] > 0 and reads[False][2] > reads[False][1]


def test_prefix_before_the_block_is_byte_identical():
    """Every message before the newest user turn, and that turn's own blocks, are
    byte-identical (canonical JSON) with and without the block; only one text block is
    added at the very end."""
    h = fact_history(5)[:-1]                      # ends with a user turn
    out = place_recall(h, Format.ANTHROPIC, _block(3))
    assert canonical_json(out[:-1]) == canonical_json(h[:-1])
    assert out[-1]["content"][:-1] == [{"type": "text", "text": h[-1]["content"]}]
    assert canonical_json(out[-1]["content"][-1]) == canonical_json(
        {"type": "text", "text": _block(3).text})


def test_openai_prefix_is_unchanged_before_the_block():
    """OpenAI: the messages before the block are the same objects, in the same order."""
    h = [{"role": "system", "content": "sys"}] + [
        {"role": "user" if k % 2 == 0 else "assistant", "content": f"m{k}"} for k in range(9)]
    out = place_recall(h, Format.OPENAI, _block(2))
    assert all(a is b for a, b in zip(out[:len(h) - 1], h[:-1]))
    assert out[len(h) - 1]["content"] == _block(2).text and out[-1] is h[-1]
