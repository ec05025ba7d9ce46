"""The public surface of compactor.ledger is a short, pinned, sorted list."""

from __future__ import annotations

import compactor.ledger


def test_public_names_are_pinned_and_sorted():
    """compactor.ledger exports exactly these names, in sorted order, each of them defined."""
    assert compactor.ledger.__all__ == [
        "BadLine",
        "Ledger",
        "LedgerError",
        "LedgerFieldError",
        "LedgerStats",
        "ReadReport",
        "Records",
        "Repair",
        "SCHEMA_VERSION",
        "Totals",
        "VerifyReport",
        "compute_stats",
        "follow_records",
        "read_records",
        "tail_records",
        "verify",
    ]
    assert compactor.ledger.__all__ == sorted(compactor.ledger.__all__)
    for name in compactor.ledger.__all__:
        assert hasattr(compactor.ledger, name)


def test_public_callables_have_docstrings():
    """Every exported class and function documents itself."""
    for name in compactor.ledger.__all__:
        obj = getattr(compactor.ledger, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
