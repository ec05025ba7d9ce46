"""The readable forms of the key-points and brief-summary tiers, on the shipped demo
session (no ../shared/data needed)."""

from __future__ import annotations

from pathlib import Path

import compactor
from compactor._format import text_of
from compactor._tokens import HeuristicCounter, message_tokens
from compactor._replay import load_conversations
from compactor.maintenance._config import TierConfig
from compactor.maintenance._profile import Tier, condensed_transcript, tier_form

DEMO = Path(compactor.__file__).parent / "data" / "demo_session.jsonl"


def _session():
    conv = load_conversations(DEMO)[0]
    counter = HeuristicCounter()
    tokens = sum(message_tokens(m, conv.fmt, counter) for m in conv.messages)
    return conv.messages, tokens, counter


def test_key_points_keep_every_turn_in_order_close_to_their_share():
    msgs, tokens, counter = _session()
    form = tier_form(Tier.KEY_POINTS, msgs, tokens, TierConfig(), counter)
    assert form["kind"] == "key_points"
    assert 0.6 <= form["share"] <= 0.70 and form["tokens"] <= int(tokens * 0.70)
    lines = form["text"].split("\n")
    with_text = [m for m in msgs if " ".join(text_of(m).split())]
    assert len(lines) == len(with_text)
    assert [ln.split(":", 1)[0] for ln in lines] == [m["role"] for m in with_text]
    assert any(ln.endswith(" …") for ln in lines)          # long lines were shortened
    # each kept line starts with the message's own text
    for ln, m in zip(lines, with_text):
        head = ln.split(": ", 1)[1].removesuffix(" …")
        assert " ".join(text_of(m).split()).startswith(head)


def test_brief_summary_stays_within_its_share_and_is_shorter_than_key_points():
    msgs, tokens, counter = _session()
    brief = tier_form(Tier.BRIEF, msgs, tokens, TierConfig(), counter)
    key = tier_form(Tier.KEY_POINTS, msgs, tokens, TierConfig(), counter)
    assert brief["kind"] == "brief_summary" and brief["tokens"] <= int(tokens * 0.40)
    assert brief["tokens"] < key["tokens"]


def test_condensed_transcript_that_cannot_fit_gives_none_and_a_short_one_is_whole():
    msgs, _, counter = _session()
    assert condensed_transcript(msgs, 10, counter) is None
    short = [{"role": "user", "content": "Rebook PNR ABC123 to Oslo."},
             {"role": "assistant", "content": "Done."}]
    assert condensed_transcript(short, 1000, counter) == \
        "user: Rebook PNR ABC123 to Oslo.\nassistant: Done."
