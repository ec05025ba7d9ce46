"""CompactingSession's Session methods called directly over a real SQLiteSession:
``get_items`` (with and without a limit), ``add_items``, ``pop_item``, ``clear_session`` and
the model-call filter keep calls with their outputs, leave the raw items in the underlying
session and keep the compactor's archive equal to them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import Agent, SQLiteSession  # noqa: E402
from agents.memory import Session  # noqa: E402
from agents.run_config import CallModelData, ModelInputData  # noqa: E402

from compactor import (ConfigError, Format, InvalidHistoryError, MessageCompactor,  # noqa: E402
                       SessionStore, validate)
from compactor.adapters.openai_agents import CompactingSession  # noqa: E402

pytestmark = pytest.mark.timeout(60)
SUMMARY_OPEN = "<conversation_summary>"


def turn(n: int) -> list[dict[str, Any]]:
    """One tool turn as the Runner stores it: an assistant message, its function call
    and the call's output (~200 words)."""
    call = f"call_{n:04d}"
    return [
        {"id": f"msg_{n}", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": f"Looking up T-{n}.", "annotations": []}]},
        {"id": f"fc_{n}", "type": "function_call", "call_id": call, "name": "lookup",
         "arguments": f'{{"ticket": "T-{n}"}}'},
        {"type": "function_call_output", "call_id": call,
         "output": f"T-{n}: open; " + "details of the failure " * 50},
    ]


def history(turns: int) -> list[dict[str, Any]]:
    """A user question then ``turns`` tool turns."""
    items: list[dict[str, Any]] = [{"role": "user", "content": "Check every ticket."}]
    for n in range(turns):
        items += turn(n)
    return items


def make(tmp: Path, sid: str = "s") -> tuple[SQLiteSession, CompactingSession, SessionStore]:
    """A SQLiteSession file, the CompactingSession over it (3,000-token window, file store)
    and the store."""
    store = SessionStore(tmp / "store")
    raw = SQLiteSession(sid, str(tmp / "sessions.db"))
    return raw, CompactingSession(raw, MessageCompactor(store=store, window=3000)), store


def is_summary(item: dict[str, Any]) -> bool:
    text = item["content"][0]["text"] if isinstance(item["content"], list) else item["content"]
    return item.get("role") == "developer" and text.startswith(SUMMARY_OPEN)


def test_the_wrapper_is_an_agents_sdk_session_with_the_underlying_id():
    """The SDK's runtime Session protocol accepts it; session_id and session_settings are
    the underlying session's."""
    raw = SQLiteSession("user-7")
    s = CompactingSession(raw)
    assert isinstance(s, Session)
    assert s.session_id == "user-7" and s.compactor_session_id == "user-7"
    assert s.session_settings is raw.session_settings


def test_wrapping_an_object_without_session_methods_is_a_config_error():
    """A session without get_items/add_items/pop_item/clear_session is refused, naming what
    is missing."""
    with pytest.raises(ConfigError, match="pop_item, clear_session"):
        CompactingSession(type("Half", (), {"session_id": "x", "get_items": lambda self: [],
                                            "add_items": lambda self, items: None})())


async def test_get_items_returns_the_summary_then_stored_items_and_keeps_every_raw_item(
        tmp_path: Path):
    """Over the window, get_items returns a developer summary followed by a tail of the
    stored items as stored, the underlying session still holds every item, and the store
    restores all of them."""
    raw, s, store = make(tmp_path)
    items = history(30)
    await s.add_items(items)
    view = await s.get_items()
    assert is_summary(view[0])
    assert 1 < len(view) < len(items) // 2
    assert view[1:] == items[len(items) - len(view) + 1:]
    assert await raw.get_items() == items
    assert store.restore("s") == items
    assert validate(view, Format.RESPONSES) == []
    assert s.compactor.session("s").compaction_count == 1


async def test_an_empty_session_reads_as_an_empty_list(tmp_path: Path):
    """get_items on an empty session is [] (the compactor is not asked)."""
    _, s, store = make(tmp_path)
    assert await s.get_items() == [] and await s.get_items(limit=3) == []
    assert not store.exists("s")


async def test_a_limit_returns_at_most_that_many_items_never_inside_a_turn(tmp_path: Path):
    """get_items(limit=N) is a tail of the full view with at most N items that starts where
    a turn starts: a valid history that never opens with a function_call_output."""
    _, s, _ = make(tmp_path)
    await s.add_items(history(30))
    view = await s.get_items()
    for limit in range(1, len(view) + 2):
        got = await s.get_items(limit=limit)
        assert len(got) <= limit and got == view[len(view) - len(got):]
        if got:
            assert validate(got, Format.RESPONSES) == []
            assert got[0].get("type") != "function_call_output"
        # a whole turn is three items: a limit of 3 or more always returns one
        assert (len(got) >= 3) is (limit >= 3)


async def test_a_stored_output_without_its_call_is_an_invalid_history_error(tmp_path: Path):
    """A function_call_output whose call is not in the session is refused with
    InvalidHistoryError naming the call id."""
    _, s, _ = make(tmp_path)
    await s.add_items([{"role": "user", "content": "hi"}, turn(0)[2]])
    with pytest.raises(InvalidHistoryError, match="call_0000"):
        await s.get_items()


async def test_pop_item_removes_the_newest_raw_item_and_the_archive_follows(tmp_path: Path):
    """pop_item returns and removes the underlying session's newest item; after a different
    item is added, the store restores the current items (the old branch kept)."""
    raw, s, store = make(tmp_path)
    items = history(30)
    await s.add_items(items)
    await s.get_items()
    assert await s.pop_item() == items[-1]
    assert await raw.get_items() == items[:-1]
    other = {**items[-1], "output": "T-29: closed"}
    await s.add_items([other])
    view = await s.get_items()
    assert view[-1] == other and is_summary(view[0])
    assert store.restore("s") == [*items[:-1], other]
    assert len(store.branches("s")) == 2


async def test_clear_session_empties_the_history_and_the_archive_keeps_the_old_branch(
        tmp_path: Path):
    """clear_session empties the underlying session (get_items == []); a new history then
    reads from scratch, and the store restores it while keeping the old one as a branch."""
    raw, s, store = make(tmp_path)
    await s.add_items(history(30))
    await s.get_items()
    await s.clear_session()
    assert await raw.get_items() == [] and await s.get_items() == []
    fresh = [{"role": "user", "content": "A new question."}, *turn(100)]
    await s.add_items(fresh)
    assert await s.get_items() == fresh
    assert store.restore("s") == fresh
    assert len(store.branches("s")) == 2


async def test_the_filter_compacts_the_raw_history_behind_the_view_it_is_given(tmp_path: Path):
    """Given the view get_items returned plus a run's new items, the model-call filter hands
    the compactor the stored items plus the new ones (the store restores exactly them) and
    returns the summary, a tail and the call's own instructions."""
    _, s, store = make(tmp_path)
    items = history(30)
    await s.add_items(items)
    view = await s.get_items()
    new = [{"role": "user", "content": "And the next ones?"}, *turn(30), *turn(31)]
    agent = Agent(name="support", instructions="Be brief.", model="gpt-4o")
    data = CallModelData(model_data=ModelInputData(input=[*view, *new],
                                                   instructions="Be brief."),
                         agent=agent, context=None)
    out = await s.call_model_input_filter(data)
    assert out.instructions == "Be brief."
    assert is_summary(out.input[0]) and out.input[-len(new):] == new
    assert store.restore("s") == [*items, *new]
    assert validate(out.input, Format.RESPONSES) == []
