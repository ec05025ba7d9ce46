"""`window`, `max_tokens` and the output reserve are token counts: an int > 0 (the reserve
and max_tokens >= 0); anything else -- 0, negative, "8k", True, 8000.0 -- is a ConfigError
naming the argument, never a TypeError or a silent fallback to the model's window."""

from __future__ import annotations

import asyncio

import pytest

from compactor import HeuristicCounter, MessageCompactor
from compactor._errors import ConfigError
from compactor._tokens import check_tokens, usable_tokens

MSGS = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "summarize the invoice"}]
NOT_WINDOWS = [0, -1, "8k", "8000", True, 8000.0, None, [8000]]


@pytest.mark.parametrize("value", NOT_WINDOWS, ids=repr)
def test_check_tokens_refuses_non_counts(value):
    """check_tokens('window', V) raises ConfigError with field 'window' for each V."""
    with pytest.raises(ConfigError) as info:
        check_tokens("window", value)
    assert info.value.field == "window" and "window" in str(info.value)
    assert "fix:" in str(info.value)


def test_check_tokens_accepts_counts():
    """Positive ints pass through; 0 only with allow_zero."""
    assert check_tokens("window", 1) == 1 and check_tokens("window", 200_000) == 200_000
    assert check_tokens("max_tokens", 0, allow_zero=True) == 0
    with pytest.raises(ConfigError):
        check_tokens("max_tokens", -1, allow_zero=True)


def test_usable_tokens_names_the_reserve_that_leaves_no_room():
    """usable_tokens(4000, 4000) -> ConfigError on max_tokens; (4000, 1000) -> 3000."""
    assert usable_tokens(4000, 1000) == 3000
    with pytest.raises(ConfigError) as info:
        usable_tokens(4000, 4000)
    assert info.value.field == "max_tokens"


@pytest.mark.parametrize("value", [0, -5, "8k", True, 8000.0], ids=repr)
def test_compact_if_needed_window(value):
    """compact_if_needed(window=V) raises ConfigError naming window (0 is not 'unset')."""
    comp = MessageCompactor(counter=HeuristicCounter())
    with pytest.raises(ConfigError) as info:
        asyncio.run(comp.compact_if_needed(MSGS, model="x", window=value))
    assert info.value.field == "window"


@pytest.mark.parametrize("value", [-1, "100", False, 10.5], ids=repr)
def test_compact_if_needed_max_tokens(value):
    """compact_if_needed(max_tokens=V) raises ConfigError naming max_tokens."""
    comp = MessageCompactor(counter=HeuristicCounter())
    with pytest.raises(ConfigError) as info:
        asyncio.run(comp.compact_if_needed(MSGS, model="x", window=4000, max_tokens=value))
    assert info.value.field == "max_tokens"


@pytest.mark.parametrize("kw, field", [({"window": 0}, "window"), ({"window": "8k"}, "window"),
                                       ({"reserve_output_tokens": -1}, "reserve_output_tokens"),
                                       ({"reserve_output_tokens": "5"}, "reserve_output_tokens")])
def test_constructor_arguments(kw, field):
    """MessageCompactor(window=..., reserve_output_tokens=...) checks them the same way."""
    with pytest.raises(ConfigError) as info:
        MessageCompactor(**kw)
    assert info.value.field == field
