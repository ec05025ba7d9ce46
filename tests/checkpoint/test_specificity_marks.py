"""A line's specificity (the render's weight) counts names, numbers, quoted titles and
time anchors, halves a question, and is not fooled by apostrophes, JSON keys or the
gaps between two quoted words."""

from __future__ import annotations

import pytest

from compactor._checkpoint import specificity


@pytest.mark.parametrize("line,expected", [
    ("we went for a long walk", 1.0),                         # no mark
    ("did you go for a walk?", 0.5),                          # a question, no mark
    ("we met Jolene at the lake", 1.5),                       # one name
    ("the order came to 482 dollars", 1.3),                   # one number
    ("we read \u201cthe little prince\u201d together", 2.0),  # a quoted title (curly quotes)
    ("we went hiking last weekend", 1.5),                     # a time anchor
    ("I loved reading \"the hobbit\" two weeks ago", 2.5),    # title + anchor ("ago")
    ("when did you see Jolene?", 0.75),                       # a name, asked: halved
    ("so O'Brien met O'Neil", 2.0),                           # two names; the apostrophes
                                                              # make no quoted title
    ('{"path": "src/app.py"}', 2.0),                          # the value, not the key
    ('say "a" or "b" here', 3.0),                             # two titles, not " or "
])
def test_specificity_counts_the_marks(line: str, expected: float):
    """Each mark adds its weight (names 0.5, numbers 0.3, titles 1.0, anchor 0.5) to 1.0;
    a question is halved."""
    assert specificity(line) == pytest.approx(expected)
