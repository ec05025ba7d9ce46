"""The public surface is a short, pinned list."""

import compactor


def test_all_is_sorted_and_pinned():
    """__all__ is sorted (constants first) and lists exactly the documented names."""
    names = compactor.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n.lower() if n.isupper() else n))
    assert set(names) == {
        "PIN_KEY", "RECALL_TOOL_ANTHROPIC", "RECALL_TOOL_OPENAI", "TIER_WINDOWS", "BudgetExceededError", "CompactionResult", "CompactorError",
        "CompactorInvariantError", "ConfigError", "ContextOverflowError", "ExtractiveSummarizer",
        "Format", "HeuristicCounter", "InvalidHistoryError", "LedgerSink", "MemorySink",
        "MessageCompactor", "NullSink", "Plan", "PlanConfig", "SessionState", "SessionStore", "Summarizer",
        "SummarizerError", "SummaryRequest", "Tier", "TiktokenCounter", "TokenCounter",
        "Truncation", "Unit", "Violation", "WindowConfig", "apply", "content_hash",
        "detect_format", "extract_facts", "group_units", "message_tokens", "must_keep_items",
        "plan", "run_recall_tool", "strip_metadata", "summary_message", "validate",
        "ArchiveNode", "FileSessionStore", "HistoryRewriteError", "SessionStoreProtocol",
        "StateConflictError"}
    for n in names:
        assert hasattr(compactor, n), n


def test_adapters_ship_as_compactor_adapters():
    """The adapters/ folder is importable as compactor.adapters (setuptools package-dir)."""
    from pathlib import Path

    import compactor.adapters

    assert Path(compactor.adapters.__file__).resolve().parent.name == "adapters"
