"""Task complexity from its text: four levels, each a budget multiplier (our spec).

The detector is a points table you can read in one screen; every point it gives is listed
in :attr:`ComplexityAssessment.reasons`:

============================  =========================================================
signal                        points
============================  =========================================================
length (words)                < 120: 0; 120-299: +1; >= 300: +2
files named                   0-1: 0; 2-4: +1; >= 5: +2 (paths like ``src/a.py``; not URLs)
systems named                 0-1: 0; 2: +1; >= 3: +2 (distinct names from :data:`SYSTEMS`)
heavy verbs                   +1 each distinct (at most +2): :data:`HEAVY_VERBS`
simple markers                -1 each distinct (at most -2): :data:`SIMPLE_MARKERS`
                              (stems: ``typo`` matches ``typos``)
============================  =========================================================

score <= -1: ``simple``; 0-1: ``medium``; 2-3: ``complex``; >= 4: ``multi-system`` when at
least 2 systems are named (else ``complex``). Unsure — no text, fewer than
:data:`MIN_WORDS` words, or no signal at all — is ``medium``: a short task is not
``simple`` for being short ("Add caching to the API using Redis"), only for a simple
marker. A manual override always wins.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from .._errors import ConfigError


class Complexity(str, enum.Enum):
    """A task's complexity level; :attr:`multiplier` scales the profile's budget."""

    SIMPLE = "simple"
    MEDIUM = "medium"
    COMPLEX = "complex"
    MULTI_SYSTEM = "multi-system"

    @property
    def multiplier(self) -> float:
        """0.5, 1.0, 1.5 or 2.0 (our spec)."""
        return MULTIPLIERS[self]

    @classmethod
    def parse(cls, value: "Complexity | str") -> "Complexity":
        """A level from its name (``"multi-system"``, ``"multi_system"``, any case).

        Raises:
            ConfigError: not a level (``field="complexity"``).
        """
        if isinstance(value, Complexity):
            return value
        text = str(value).strip().lower().replace("_", "-")
        for c in cls:
            if c.value == text:
                return c
        raise ConfigError(f"complexity {value!r} is not a level; fix: use one of "
                          + ", ".join(c.value for c in cls), field="complexity")


#: Budget multiplier per level (our spec).
MULTIPLIERS: dict[Complexity, float] = {
    Complexity.SIMPLE: 0.5,
    Complexity.MEDIUM: 1.0,
    Complexity.COMPLEX: 1.5,
    Complexity.MULTI_SYSTEM: 2.0,
}

#: Fewer words than this and the detector is unsure: ``medium``.
MIN_WORDS = 3

#: Verbs of work that spans files or systems (stems; "migrate" matches "migrating").
HEAVY_VERBS = ("migrat", "refactor", "integrat", "redesign", "rewrit", "re-architect",
               "rearchitect", "overhaul", "replatform", "consolidat", "orchestrat")

#: Phrases of small, local work (stems, like :data:`HEAVY_VERBS`: "typo" matches "typos",
#: "renam" "renaming", "format" "formatting").
SIMPLE_MARKERS = ("typo", "renam", "one-line", "one line", "single line", "docstring",
                  "comment", "bump the version", "bump version", "format", "lint",
                  "small fix", "quick fix", "minor")

#: Systems whose names count toward "systems named" (lower case, whole words).
SYSTEMS = ("postgres", "postgresql", "mysql", "sqlite", "mongodb", "redis", "kafka",
           "rabbitmq", "sqs", "s3", "elasticsearch", "opensearch", "dynamodb", "bigquery",
           "snowflake", "graphql", "grpc", "kubernetes", "k8s", "terraform", "docker",
           "airflow", "spark", "stripe", "auth0", "okta", "salesforce", "twilio", "sentry",
           "datadog", "frontend", "backend", "database", "api gateway", "message queue",
           "cache", "cdn", "billing", "payments", "auth service", "search service",
           "data warehouse", "mobile app", "web app", "ci pipeline")

_FILE_RE = re.compile(
    r"(?<![\w/.-])(?:[\w.-]+/)*[\w-]+\.(?:py|pyi|js|jsx|ts|tsx|go|rs|java|kt|rb|php|cs|cpp|cc|c|h|"
    r"hpp|swift|scala|sql|sh|yaml|yml|toml|json|ini|cfg|md|rst|html|css|scss|proto|tf)\b"
    r"|(?<![\w/])(?:[\w.-]+/){2,}[\w.-]*")
_URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z0-9_'-]+")


@dataclass(frozen=True)
class ComplexityAssessment:
    """What the detector decided, and why.

    Attributes:
        level: the :class:`Complexity`.
        multiplier: ``level.multiplier``.
        score: the points total (0 for an override or an unsure default).
        source: ``"detected"``, ``"override"`` or ``"default"`` (unsure: medium).
        words / files / systems / heavy_verbs / simple_markers: the measured signals.
        reasons: one line per signal that gave points, e.g. ``"3 systems named (+2)"``.
    """

    level: Complexity
    multiplier: float
    score: int = 0
    source: str = "detected"
    words: int = 0
    files: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()
    heavy_verbs: tuple[str, ...] = ()
    simple_markers: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default=())


def _found(text: str, vocabulary: tuple[str, ...], *, whole_words: bool,
           suffix: str = r"[\w-]*") -> tuple[str, ...]:
    """The vocabulary entries found in ``text`` (whole words, or stems followed by
    ``suffix``: then the word found, e.g. ``migrating`` for ``migrat``), each once, in
    vocabulary order."""
    out = []
    for v in vocabulary:
        pattern = rf"\b{re.escape(v)}\b" if whole_words else rf"\b{re.escape(v)}{suffix}"
        m = re.search(pattern, text)
        if m:
            out.append(m.group(0).strip())
    return tuple(dict.fromkeys(out))


def _band(n: int, bands: tuple[tuple[int, int], ...]) -> int:
    """Points for ``n``: the points of the last band whose lower bound ``n`` reaches."""
    points = 0
    for lower, p in bands:
        if n >= lower:
            points = p
    return points


def detect_complexity(text: str | None, *,
                      override: Complexity | str | None = None) -> ComplexityAssessment:
    """Assess a task's complexity from its text (pure, deterministic).

    Args:
        text: the task as given to the agent (``None`` or empty: unsure, ``medium``).
        override: a level that wins over detection (``source="override"``).

    Raises:
        ConfigError: ``override`` is not a level.
    """
    if override is not None:
        level = Complexity.parse(override)
        return ComplexityAssessment(level, level.multiplier, source="override",
                                    reasons=(f"override: {level.value}",))
    words = _WORD_RE.findall(text or "")
    if len(words) < MIN_WORDS:
        return ComplexityAssessment(Complexity.MEDIUM, Complexity.MEDIUM.multiplier,
                                    source="default", words=len(words),
                                    reasons=(f"unsure ({len(words)} words): medium",))
    low = (text or "").lower()
    no_urls = _URL_RE.sub(" ", text or "")      # a link is not a file of the task
    files = tuple(dict.fromkeys(f for f in (m.group(0).rstrip("/.")
                                            for m in _FILE_RE.finditer(no_urls))
                                if any(ch.isalpha() for ch in f)))   # 2024/01/02 is a date
    systems = _found(low, SYSTEMS, whole_words=True)
    heavy = _found(low, HEAVY_VERBS, whole_words=False)
    # letters only after the stem: "typos" counts, an identifier like minor_version not
    simple = _found(low, SIMPLE_MARKERS, whole_words=False, suffix=r"[a-z]*\b")
    parts = [
        (f"{len(words)} words", _band(len(words), ((0, 0), (120, 1), (300, 2)))),
        (f"{len(files)} files named", _band(len(files), ((0, 0), (2, 1), (5, 2)))),
        (f"{len(systems)} systems named", _band(len(systems), ((0, 0), (2, 1), (3, 2)))),
        (f"heavy verbs {', '.join(heavy)}", min(len(heavy), 2)),
        (f"simple markers {', '.join(simple)}", -min(len(simple), 2)),
    ]
    score = sum(p for _, p in parts)
    if score <= -1:
        level = Complexity.SIMPLE
    elif score <= 1:
        level = Complexity.MEDIUM
    elif score <= 3 or len(systems) < 2:
        level = Complexity.COMPLEX
    else:
        level = Complexity.MULTI_SYSTEM
    reasons = tuple(f"{label} ({p:+d})" for label, p in parts if p)
    return ComplexityAssessment(level, level.multiplier, score, "detected", len(words), files,
                                systems, heavy, simple, reasons)
