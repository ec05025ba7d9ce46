"""The must-keep retention a compaction reports is the share of the evicted span's items
that is really in what was sent: counted here with this file's own pattern, on a span
holding more order ids than a small summary can carry."""

import asyncio
import json
import re

import pytest

from compactor import HeuristicCounter, MessageCompactor, PlanConfig

ORDER = re.compile(r"ORD-\d{4}")
FILLER = ("please", "kindly", "soon", "today", "again", "carefully", "quickly", "now")


def _history(turns: int):
    """Turns that each name two order ids among filler words (no other must-keep item)."""
    msgs = []
    for t in range(turns):
        msgs.append({"role": "user", "content": f"Please look at order ORD-{1000 + t} and "
                     f"ORD-{5000 + t} " + " ".join(FILLER[(t + k) % 8] for k in range(30))})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": "Looked at "
                     "them " + " ".join(FILLER[(t * 3 + k) % 8] for k in range(30 + t))}]})
    msgs.append({"role": "user", "content": "next"})
    return msgs


@pytest.mark.parametrize("summary_tokens", [60, 150])
def test_reported_retention_is_the_share_of_evicted_ids_found_in_what_was_sent(summary_tokens):
    """The reported must_keep_total / must_keep_kept / retention_score equal this test's
    count of order ids in the evicted messages and of those found in the sent messages,
    which here is well below 1 (the summary budget cannot hold them all)."""
    msgs = _history(40)
    comp = MessageCompactor(counter=HeuristicCounter(), window=3000,
                            config=PlanConfig(max_summary_tokens=summary_tokens, keep_recent=2))
    r = asyncio.run(comp.compact_if_needed(msgs))
    assert r.compacted
    sent = {json.dumps(m, sort_keys=True) for m in r.messages}
    evicted = [m for m in msgs if json.dumps(m, sort_keys=True) not in sent]
    items = set(ORDER.findall(json.dumps(evicted)))
    found = items & set(ORDER.findall(json.dumps(r.messages)))
    assert len(items) > 40 and 0 < len(found) < 0.8 * len(items)
    assert (r.must_keep_total, r.must_keep_kept) == (len(items), len(found))
    assert r.retention_score == pytest.approx(len(found) / len(items))
