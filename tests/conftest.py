"""Shared fixtures: the real transcripts in ../shared/data (skipped when absent) and
small history builders for both wire formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compactor import HeuristicCounter, TiktokenCounter

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared transcripts folder; tests using it skip with a reason when it is absent."""
    if not (SHARED / "tau_bench_gpt4o_airline.anthropic.jsonl").is_file():
        pytest.skip("../shared/data is absent (a fresh clone has no shared/); CI has it")
    return SHARED


@pytest.fixture(scope="session")
def tiktoken_counter() -> TiktokenCounter:
    return TiktokenCounter()


@pytest.fixture
def counter() -> HeuristicCounter:
    return HeuristicCounter()


