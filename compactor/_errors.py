"""Typed errors, named by whose fault they are (the caller's history, the config,
the summarizer, or the window itself)."""

from __future__ import annotations


class CompactorError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidHistoryError(CompactorError, ValueError):
    """The caller's history breaks a provider rule.

    Attributes:
        index: 0-based index of the offending message in the list the caller passed
            (``None`` when the problem is the list as a whole).
        tool_id: the ``tool_use`` / ``tool_call`` id involved, when there is one.
        rule: a short machine-readable rule code (see ``compactor.validate``).
        fix: what to change so that rule holds (the text after ``fix:`` in the message),
            or ``None`` when the message carries its own.
    """

    def __init__(self, message: str, *, index: int | None = None,
                 tool_id: str | None = None, rule: str = "invalid",
                 fix: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.tool_id = tool_id
        self.rule = rule
        self.fix = fix


class ConfigError(CompactorError, ValueError):
    """A configuration value is wrong. The message names the field and the fix.

    Attributes:
        field: the option or config key at fault (e.g. ``"high_watermark"``).
        source: the file the value came from, when it came from a file.
    """

    def __init__(self, message: str, *, field: str | None = None,
                 source: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.source = source


class SummarizerError(CompactorError):
    """A summarizer failed or returned something that is not a usable summary
    (empty, malformed, or longer than its input). Never becomes content."""


class ContextOverflowError(CompactorError):
    """The part of the history that can never be removed does not fit the window.

    Attributes (all in tokens):
        floor_tokens: system prompt + tool schemas + pinned messages + the last unit.
        summary_tokens: tokens reserved for the summary.
        window_tokens: the usable context window (window minus reserved output).
    """

    def __init__(self, *, floor_tokens: int, summary_tokens: int, window_tokens: int,
                 detail: str = "") -> None:
        self.floor_tokens = floor_tokens
        self.summary_tokens = summary_tokens
        self.window_tokens = window_tokens
        msg = (f"the floor of the history ({floor_tokens} tokens: system prompt, tool schemas, "
               f"pinned messages and the turn in progress) plus the summary ({summary_tokens} "
               f"tokens) does not fit the usable window ({window_tokens} tokens)")
        if detail:
            msg += f"; {detail}"
        msg += ("; fix: use a larger window/tier, unpin messages, shorten the last tool result, "
                "or choose overflow='truncate_tool_results'")
        super().__init__(msg)


class BudgetExceededError(CompactorError):
    """A hard token budget would be exceeded by the next model call."""
