"""Prices of summarizer calls: USD per million tokens by model name."""

from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Sequence

#: USD per million (input, output) tokens, from Anthropic's and OpenAI's pricing pages
#: (November 2026 list prices; override with ``MessageCompactor(prices=...)``).
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5*": (1.0, 5.0),
    "claude-sonnet-4*": (3.0, 15.0),
    "claude-opus-4-5*": (5.0, 25.0),
    "claude-opus-4-1*": (15.0, 75.0),
    "gpt-4o-mini*": (0.15, 0.60),
    "gpt-4o*": (2.50, 10.0),
}


def price_usage(usage: Sequence[Mapping[str, Any]],
                prices: Mapping[str, tuple[float, float]]) -> float | None:
    """USD cost of summarizer calls (``usage`` dicts with ``model``, ``input_tokens``,
    ``output_tokens``); 0.0 when there were none (the offline summarizer), None when a
    model has no price. A model matches its exact name first, then the first
    ``fnmatch`` pattern."""
    total = 0.0
    for u in usage:
        model = str(u.get("model", ""))
        rate = prices.get(model) or next((v for k, v in prices.items()
                                          if fnmatch.fnmatchcase(model, k)), None)
        if rate is None:
            return None
        total += (int(u.get("input_tokens", 0)) * rate[0]
                  + int(u.get("output_tokens", 0)) * rate[1]) / 1e6
    return round(total, 6)
