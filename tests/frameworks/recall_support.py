"""What the framework recall tests share: a conversation whose first note holds a fact, logs
that push it out of a 6k window, a question about it, and how to find the recalled block in
a recorded request.

Imported by its unique name (several test folders have a conftest.py)."""

from __future__ import annotations

from typing import Any

from compactor.adapters import Calibrator
from compactor.testing import RecordedRequest, Reply

#: The provider's context window of these runs, in provider tokens.
WINDOW = 6000
#: Output tokens each model call reserves.
MAX_TOKENS = 256
#: How a recalled block starts and ends (compactor._recall's markers, written out here).
OPEN, CLOSE = "<recalled_context", "</recalled_context>"
FACT = "eu-north-5"
#: The first user turn: the note the question asks about.
NOTE = (f"For the record: the staging database lives in region {FACT}, on the cluster "
        "pg-stage-3, and its backups run nightly at 02:00 UTC to the bucket acme-stage-bak.")
QUESTION = "Which region does the staging database live in? Quote the note."
#: Log turns between the note and the question: together several times the window.
LOGS = 40


def log_turn(k: int) -> str:
    """Log turn ``k``: 55 words found in no other turn (``k`` in each), so it recalls
    nothing."""
    return " ".join(f"q{k}z{j}" for j in range(55)) + "."


def turns() -> list[str]:
    """The user turns of a run: the note, the logs, the question, then one more log (its
    model call carries the usage of the question's request, for the calibration)."""
    return [NOTE, *(log_turn(k) for k in range(LOGS)), QUESTION, log_turn(LOGS)]


class RecordingCalibrator(Calibrator):
    """A calibrator that keeps every (estimate, provider count) pair it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def observe(self, model: str, estimate: int, provider: int) -> float | None:
        self.seen.append((estimate, provider))
        return super().observe(model, estimate, provider)


def respond(req: RecordedRequest) -> Reply:
    """The agent model: a short acknowledgement naming the request's sequence number."""
    return Reply(text=f"Ack {req.seq}.")


def text_of(content: Any) -> str:
    """A message content (a string, or blocks/parts) as its text."""
    if isinstance(content, str):
        return content
    return "".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict))
