"""Must-keep items: the identifier-like facts a summary may not lose.

An item is a literal substring of the conversation of one of these kinds (checked in
this order; a span claimed by an earlier kind is not matched again):

========  =====================================================  ===================
kind      pattern                                                examples
========  =====================================================  ===================
url       ``http(s)://...``                                      https://x.io/a?b=1
email     ``name@host.tld``                                      mia.li@example.com
path      a file path with a directory or a known extension      src/billing/tax.py
date      ISO dates/times, ``8 May, 2023``, ``May 8, 2023``      2024-05-15
amount    a currency sign or code with a number                  $1,249.00, 300 USD
version   ``1.2.3`` / ``v1.2.3``                                 v2.3.1
id        a token of 4+ chars mixing letters and digits          HAT001, 8JX2WO
number    a number of 3+ digits or with a decimal point          4,821  3.5
name      two or more capitalised words in a row                 Mia Li, New York
entity    one capitalised word inside a sentence                 Sweden, Bach
========  =====================================================  ===================

Tool-call plumbing ids (``toolu_...``, ``call_...``), ordinals (``20th``) and JSON keys
(``"address1":``) are not facts. ``name``,
``entity`` and ``number`` items are extracted only from what people wrote (user and assistant text,
tool inputs), not from tool output, where they are mostly noise.
"""

from __future__ import annotations

import re
from typing import Iterable

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"https?://[^\s<>\"'\])}]+[^\s<>\"'\])}.,;:!?]")),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("path", re.compile(r"(?<![\w/.-])(?:\.{0,2}/(?:[\w.-]+/)*[\w.-]*\w|(?:[\w.-]+/){2,}[\w.-]*\w"
                        r"|(?:[\w.-]+/)+[\w-]+\.[A-Za-z]\w{0,4}\b)"
                        r"|\b[\w-]+\.(?:py|js|ts|tsx|jsx|json|ya?ml|toml|md|txt|cfg|ini|sql|sh|go|"
                        r"rs|java|rb|php|c|h|cpp|hpp|css|html|csv|lock|log)\b")),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?\b"
                        r"|\b\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*,? \d{4}\b"
                        r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{1,2},? \d{4}\b")),
    ("amount", re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)? ?(?:USD|EUR|GBP|dollars)\b")),
    ("version", re.compile(r"\bv?\d+\.\d+\.\d+(?:[-+.][\w.]+)?\b")),
    ("id", re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_-]{3,}\b")),
    ("number", re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d{3,}(?:\.\d+)?(?![\w.])"
                          r"|(?<![\w.])\d+\.\d+(?![\w.])")),
    ("name", re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b")),
    ("entity", re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{2,}\b")),
)

_PLUMBING = re.compile(r"^(?:toolu_|call_|srvtoolu_|tool_)", re.I)
_ORDINAL = re.compile(r"^\d+(?:st|nd|rd|th)$", re.I)
_NOISY_KINDS = frozenset({"name", "number", "entity"})
_NAME_STOP = frozenset({"The", "This", "That", "These", "Those", "Thank", "Thanks", "Hello", "Hi",
                        "Hey", "Yes", "No", "Okay", "Sure", "Please", "Great", "Sorry", "Dear",
                        "What", "When", "Where", "Which", "Who", "Why", "How", "I", "It", "We",
                        "You", "My", "Our", "Your", "And", "But", "If", "So", "Let", "Here",
                        "Wow", "Yeah", "Bye", "Oh", "Ah", "Aw", "Awesome", "Cool", "Nice", "Good",
                        "Congrats", "Congratulations", "Welcome", "Morning", "Night", "Love"})


def extract_facts(text: str, *, prose: bool = True) -> list[str]:
    """Must-keep items of ``text``, deduplicated, in order of first appearance.

    Args:
        text: any text.
        prose: True for what people wrote; False for tool output (no ``name``/``number``).
    """
    # taken[i] == 1 when character i belongs to an item already claimed; a match overlaps
    # an earlier item when its span holds a 1 (bytearray.find: linear in the span, so the
    # whole extraction is linear in len(text))
    taken = bytearray(len(text))
    found: list[tuple[int, str]] = []
    for kind, pat in _PATTERNS:
        if not prose and kind in _NOISY_KINDS:
            continue
        for m in pat.finditer(text):
            a, b = m.span()
            if taken.find(1, a, b) != -1:
                continue
            item = m.group(0).strip()
            if kind == "id" and (_PLUMBING.match(item) or _ORDINAL.match(item)
                                 or text[b:b + 2] in ('":', "':")):
                continue
            if kind == "entity" and item in _NAME_STOP:
                continue
            if kind == "name":
                words = item.split(" ")
                while words and words[0] in _NAME_STOP:
                    words.pop(0)
                if len(words) < 2:
                    continue
                item = " ".join(words)
            taken[a:b] = b"\x01" * (b - a)
            found.append((a, item))
    found.sort()
    return list(dict.fromkeys(item for _, item in found))


def normalize(text: str) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed: for containment checks."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def missing(items: Iterable[str], context: str) -> list[str]:
    """The items not present in ``context`` (compared after :func:`normalize`, as whole
    words: "v1.2" is in "use v1.2 now" but not in "v1.23").

    Linear in ``len(context)`` plus the items' words: the context's words are indexed once
    and each item is looked up at the positions of its first word.
    """
    words = normalize(context).split()
    at: dict[str, list[int]] = {}
    for pos, w in enumerate(words):
        at.setdefault(w, []).append(pos)
    out = []
    for it in items:
        seq = normalize(it).split()
        if not seq:
            if words:
                out.append(it)
            continue
        k = len(seq)
        if not any(words[p:p + k] == seq for p in at.get(seq[0], ())):
            out.append(it)
    return out
