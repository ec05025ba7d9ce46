"""The result type of the benchmark's baseline strategies (no LangChain needed to import it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class BaselineResult:
    """The subset of ``CompactionResult`` that ``compactor._replay.replay_conversation``
    reads, for strategies that are not ``MessageCompactor`` (tokens in tokens)."""

    messages: list[Mapping[str, Any]]
    compacted: bool
    tokens_before: int
    tokens_after: int
    window: int
    must_keep_total: int = 0
    must_keep_kept: int = 0
    ratio: float = 0.0
    retention_score: float = 1.0
    removed: tuple[Any, ...] = ()
    summary: str | None = None

    def to_send(self) -> list[Mapping[str, Any]]:
        """What to send: the messages (baselines place no recall block)."""
        return self.messages
