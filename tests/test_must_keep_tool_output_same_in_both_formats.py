"""A tool's output yields the same must-keep items whether it arrives as an Anthropic
``tool_result`` block or an OpenAI ``tool`` message: read once, as tool output (names,
street numbers and other prose-only items of a JSON record are not must-keep)."""

from __future__ import annotations

import json

from compactor._summary import must_keep_items

RECORD = json.dumps({"user_id": "mia_li_3668", "address": {"address1": "975 Sunset Drive",
                                                           "city": "Austin", "zip": "78750"},
                     "payment_methods": {"credit_card_4421917": {"last_four": "7447"}},
                     "reservations": ["NO6JO3", "AIXC49"]})


def test_tool_output_items_do_not_depend_on_the_wire_format():
    """The same record as a tool_result block and as a tool message: equal item lists,
    holding the ids and reservation codes, not the street name."""
    anthropic = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                "content": RECORD}]}]
    openai_str = [{"role": "tool", "tool_call_id": "t1", "content": RECORD}]
    openai_parts = [{"role": "tool", "tool_call_id": "t1",
                     "content": [{"type": "text", "text": RECORD}]}]
    a = must_keep_items(anthropic, None)
    assert must_keep_items(openai_str, None) == a == must_keep_items(openai_parts, None)
    assert {"mia_li_3668", "NO6JO3", "AIXC49"} <= set(a)
    assert "Sunset Drive" not in a and "Austin" not in a
