"""Agent context compactor: keeps LLM agent histories inside their context window.

The public API is this module's ``__all__`` (pinned by ``tests/test_public_api.py``).
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from ._compactor import (CompactionResult, CompactorInvariantError, MessageCompactor,
                         SessionState, content_hash)
from ._errors import (BudgetExceededError, CompactorError, ConfigError, ContextOverflowError,
                      InvalidHistoryError, SummarizerError)
from ._facts import extract_facts
from ._format import PIN_KEY, Format, detect_format, strip_metadata
from ._plan import Plan, PlanConfig, Truncation, apply, plan, summary_message
from ._sink import LedgerSink, MemorySink, NullSink
from ._session import HistoryRewriteError
from ._store import (RECALL_TOOL_ANTHROPIC, RECALL_TOOL_OPENAI, ArchiveNode, FileSessionStore,
                     SessionStore, SessionStoreProtocol, StateConflictError, run_recall_tool)
from ._summary import ExtractiveSummarizer, Summarizer, SummaryRequest, must_keep_items
from ._tokens import (TIER_WINDOWS, HeuristicCounter, Tier, TiktokenCounter, TokenCounter,
                      WindowConfig, message_tokens)
from ._units import Unit, group_units
from ._validate import Violation, validate

try:  # the installed distribution's version (pyproject.toml is its one source)
    __version__ = _dist_version("agent-context-compactor")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "PIN_KEY",
    "RECALL_TOOL_ANTHROPIC",
    "RECALL_TOOL_OPENAI",
    "TIER_WINDOWS",
    "ArchiveNode",
    "BudgetExceededError",
    "CompactionResult",
    "CompactorError",
    "CompactorInvariantError",
    "ConfigError",
    "ContextOverflowError",
    "ExtractiveSummarizer",
    "FileSessionStore",
    "Format",
    "HeuristicCounter",
    "HistoryRewriteError",
    "InvalidHistoryError",
    "LedgerSink",
    "MemorySink",
    "MessageCompactor",
    "NullSink",
    "Plan",
    "PlanConfig",
    "SessionState",
    "SessionStore",
    "SessionStoreProtocol",
    "StateConflictError",
    "Summarizer",
    "SummarizerError",
    "SummaryRequest",
    "Tier",
    "TiktokenCounter",
    "TokenCounter",
    "Truncation",
    "Unit",
    "Violation",
    "WindowConfig",
    "apply",
    "content_hash",
    "detect_format",
    "extract_facts",
    "group_units",
    "message_tokens",
    "must_keep_items",
    "plan",
    "run_recall_tool",
    "strip_metadata",
    "summary_message",
    "validate",
]
