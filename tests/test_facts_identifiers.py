"""The must-keep extractor keeps identifiers whole and finds codes, amounts and dates
(expected values written by hand from the sentences)."""

from __future__ import annotations

import pytest

from compactor import extract_facts


@pytest.mark.parametrize("text, expected", [
    ("Move the pods to Zone/Hsdkaa before noon.", ["Zone/Hsdkaa"]),
    ("Merge spike/hyopr-35 into main.", ["spike/hyopr-35"]),
    ("Switch the bucket to eu-west-2 today.", ["eu-west-2"]),
    ("It calls os.path.join and reads max_tokens from the config.", ["os.path.join", "max_tokens"]),
    ("Use std::vector here.", ["std::vector"]),
    ("Write to mia.li@example.com or see https://x.io/a?b=1.", ["mia.li@example.com", "https://x.io/a?b=1"]),
    ("Edit src/billing/tax.py and /etc/nginx/nginx.conf, then ~/notes/todo.", ["src/billing/tax.py",
                                                                                "/etc/nginx/nginx.conf",
                                                                                "~/notes/todo"]),
    ("Pin v1.2.3 of the client and commit 9f3c2ab1.", ["v1.2.3", "9f3c2ab1"]),
    ("The ledger code is PAMNT and the airport is JFK.", ["PAMNT", "JFK"]),
    ("Codes PAMNT, QXRT apply.", ["PAMNT", "QXRT"]),
])
def test_identifiers_are_kept_whole(text: str, expected: list[str]) -> None:
    """Identifiers joined by / : - . @ _ come out as one item, exactly as written."""
    assert extract_facts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("The budget is now $300.", ["$300"]),
    ("Cap it at $1,249.50 or 300 USD or EUR 40.", ["$1,249.50", "300 USD", "EUR 40"]),
    ("Raised $1.2M, a 15% share.", ["$1.2M", "15%"]),
])
def test_amounts(text: str, expected: list[str]) -> None:
    """Currency amounts (sign, code before or after) and percentages are items."""
    assert extract_facts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Due 2024-05-15 at 10:30 AM.", ["2024-05-15", "10:30 AM"]),
    ("We met on 8 May, 2023 and again May 9.", ["8 May, 2023", "May 9"]),
    ("[Session 1 - 1:56 pm on 8 May, 2023] Hi!", ["8 May, 2023"]),
    ("Sign by 5/8/24 or the 3rd of March.", ["5/8/24", "3rd of March"]),
])
def test_dates(text: str, expected: list[str]) -> None:
    """ISO dates, written dates with or without a year, numeric dates and clock times."""
    assert extract_facts(text) == expected


@pytest.mark.parametrize("text", [
    "Use a well-known library, e.g. the follow-up one, and/or the other.",
    "NEVER push to main. DO NOT DO THIS EVER.",
    "You may 8 times ask.",
])
def test_ordinary_words_are_not_identifiers(text: str) -> None:
    """Hyphenated English, abbreviations, and/or, shouted words and the verb "may" are not
    items."""
    assert extract_facts(text) == []


def test_tool_output_keeps_identifiers_not_keys_names_or_codes() -> None:
    """In tool output, JSON keys, capitalised codes, names and small numbers are skipped;
    ids with digits, snake_case values and code identifiers (a function, a dotted call, a
    class) are kept."""
    out = '{"flight_number": "HAT001", "cabin": "basic_economy", "origin": "JFK", "pay": "credit_card_7815826"}'
    assert extract_facts(out, prose=False) == ["HAT001", "basic_economy", "credit_card_7815826"]
    code = ('    def build_lookup(self, lookups):\n        return self.get_paginator(qs)  # Mia Li, 42\n'
            'class DictionarySerializer(Base):')
    assert extract_facts(code, prose=False) == ["build_lookup", "self.get_paginator",
                                                "DictionarySerializer"]


def test_plumbing_ids_are_not_facts() -> None:
    """Tool-call ids (toolu_..., call_...) are not items."""
    assert extract_facts("Result of toolu_01AbC9 and call_77xyz for BUG-1000.") == ["BUG-1000"]
