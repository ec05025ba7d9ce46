"""Histories with facts at known ordinals, archived in a real store, for the recall tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compactor import HeuristicCounter, SessionStore
from compactor._recall import RecallIndex
from compactor._store import content_hash

#: Ordinal of the user message stating where the staging database lives.
REGION_ORDINAL = 6
#: Ordinals of the tool call reading the payments config and of its result.
CONFIG_CALL, CONFIG_RESULT = 10, 11


def fact_history(filler_turns: int = 25) -> list[dict[str, Any]]:
    """An Anthropic history: a task, a fact stated by the user at ordinal 6, a tool call
    (ordinal 10) whose result (ordinal 11) holds a merchant id, then routine turns that
    share words with the questions ("database", "config", "region") but not the facts."""
    h: list[dict[str, Any]] = [
        {"role": "user", "content": "Set up the deploy pipeline for project Heron."},
        {"role": "assistant", "content": [{"type": "text", "text": "Starting on Heron."}]},
        {"role": "user", "content": "Routine check 0: is the production database healthy?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Production database ok."}]},
        {"role": "user", "content": "Routine check 1: any alerts in the region dashboards?"},
        {"role": "assistant", "content": [{"type": "text", "text": "No alerts anywhere."}]},
        {"role": "user", "content": "For the record: the staging database lives in region "
                                    "eu-north-5 and its backup window is 02:00 UTC."},
        {"role": "assistant", "content": [{"type": "text", "text": "Noted."}]},
        {"role": "user", "content": "Now look at the payments settings."},
        {"role": "assistant", "content": [{"type": "text", "text": "Reading them."}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_cfg01", "name": "read_file",
             "input": {"path": "config/payments.yaml"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_cfg01",
             "content": "merchant_id: ACME-77812\ncurrency: SEK\nretry_limit: 4"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Payments read."}]},
    ]
    for k in range(filler_turns):
        h.append({"role": "user", "content": f"Routine check {k + 2}: the config of build "
                                             f"{k} and the database of the region are fine?"})
        h.append({"role": "assistant", "content": [
            {"type": "text", "text": f"Build {k}: green. Nothing else to report."}]})
    return h


def archive(store: SessionStore, session_id: str, messages: list[dict[str, Any]],
            start: int = 0) -> None:
    """Archive ``messages`` as the session's history from ordinal ``start`` on."""
    store.append(session_id, [(start + i, content_hash(m), m) for i, m in enumerate(messages)])


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "store")


@pytest.fixture
def index(store: SessionStore) -> RecallIndex:
    """A fresh file index beside the store (closed after the test)."""
    ix = RecallIndex(store.root / "recall.sqlite3")
    yield ix
    ix.close()


@pytest.fixture
def counter() -> HeuristicCounter:
    return HeuristicCounter()
