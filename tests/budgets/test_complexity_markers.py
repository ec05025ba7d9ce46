"""Complexity detection on edge texts: a short task is not simple for being short,
simple markers match inflected words, URLs and dates are not file names."""

from __future__ import annotations

import pytest

from compactor.budgets import Complexity, detect_complexity


@pytest.mark.parametrize("text", [
    "Implement pagination for the users endpoint",
    "Add caching to the API using Redis",
    "Fix the failing test in tests/test_api.py",
    "Make the function minor_version return an int",
])
def test_a_short_task_is_not_simple_for_being_short(text):
    """Short plausible tasks with no simple marker are medium (unsure), not halved."""
    assert detect_complexity(text).level is Complexity.MEDIUM


@pytest.mark.parametrize("text, marker", [("Fix typos in the docs", "typos"),
                                          ("Fix formatting issues in the parser", "formatting"),
                                          ("Renaming the helper module", "renaming")])
def test_simple_markers_match_inflected_words(text, marker):
    """Plurals and -ing forms of the simple markers count."""
    a = detect_complexity(text)
    assert a.level is Complexity.SIMPLE and marker in a.simple_markers


def test_urls_and_dates_are_not_files():
    """Links and dates with slashes are not counted as files named."""
    a = detect_complexity("Read https://example.com/docs/api/v2/users and "
                          "https://example.com/a/b/c before the 2024/01/02 release")
    assert a.files == ()
    assert detect_complexity("Edit src/a/b.py and lib/c.py now").files == ("src/a/b.py",
                                                                           "lib/c.py")
