"""Must-keep items: the identifier-like facts a summary may not lose.

An item is a literal substring of the conversation of one of these kinds (checked in
this order; a span claimed by an earlier kind is not matched again):

========  =====================================================  ========================
kind      pattern                                                examples
========  =====================================================  ========================
url       ``http(s)://...``                                      https://x.io/a?b=1
email     ``name@host.tld``                                      mia.li@example.com
path      a file path with a directory or a known extension      src/billing/tax.py
date      ISO dates/times, ``8 May, 2023``, ``May 8``, ``5/8/24``,  2024-05-15, 1:56 pm
          clock times with am/pm
amount    a currency sign or code with a number; percentages     $1,249.00, 300 USD, 15%
version   ``1.2.3`` / ``v1.2.3``                                 v2.3.1
ident     word parts joined by ``/ : . @ - _`` (kept whole), with  Zone/Hsdkaa,
          a digit, an inner capital, a slash, ``@``, ``_`` or     spike/hyopr-35, eu-west-2,
          three parts (not ``e.g.``, ``well-known``, ``and/or``)  os.path.join, max_tokens
id        a token of 4+ chars mixing letters and digits          HAT001, 8JX2WO, 9f3c2ab
code      an all-capitals word of 3+ letters in mixed-case text  PAMNT, JFK
symbol    a camelCase / PascalCase word with an inner capital     ModelChoiceField, getUser
number    a number of 3+ digits or with a decimal point          4,821  3.5
name      two or more capitalised words in a row                 Mia Li, New York
entity    one capitalised word inside a sentence                 Sweden, Bach
========  =====================================================  ========================

Tool-call plumbing ids (``toolu_...``, ``call_...``), ordinals (``20th``) and JSON keys
(``"address1":``) are not facts. ``code``, ``name``, ``entity`` and ``number`` items are
extracted only from what people wrote (user and assistant text, tool inputs), not from tool
output, where they are mostly noise (street numbers and city names of a JSON record, counts,
headings). Identifiers (``ident``, ``symbol``) are read from tool output too: a coding
agent's tool output is where the functions and classes it changes are named (on the shared
coding sessions, the changed symbols kept at window 25% went 70 -> 75 of 78 when they were).

Extraction is linear in the length of the text (claimed spans are marked in a byte mask).
"""

from __future__ import annotations

import re
from typing import Iterable

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"https?://[^\s<>\"'\])}]+[^\s<>\"'\])}.,;:!?]")),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("path", re.compile(r"(?<![\w/.-])(?:~?\.{0,2}/(?:[\w.-]+/)*[\w.-]*\w|(?:[\w.-]+/){2,}[\w.-]*\w"
                        r"|(?:[\w.-]+/)+[\w-]+\.[A-Za-z]\w{0,4}\b)"
                        r"|\b[\w-]+\.(?:py|js|ts|tsx|jsx|json|ya?ml|toml|md|txt|cfg|ini|sql|sh|go|"
                        r"rs|java|rb|php|c|h|cpp|hpp|css|html|csv|lock|log)\b")),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?\b"
                        r"|\b\d{1,2}(?:st|nd|rd|th)? (?:of )?" + _MONTH + r"(?:,? \d{4})?(?![\w])"
                        r"|\b" + _MONTH + r"\.? \d{1,2}(?:st|nd|rd|th)?(?:,? \d{4})?\b"
                        r"|\b\d{1,2}/\d{1,2}/\d{2,4}\b"
                        r"|\b\d{1,2}:\d{2}\s?[AaPp]\.?[Mm](?![\w])(?! on \d)")),
    ("amount", re.compile(r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:k|K|m|M|bn|million|billion|thousand)\b)?"
                          r"|\b(?:USD|EUR|GBP|JPY|CHF|CAD|AUD)\s?\d[\d,]*(?:\.\d+)?"
                          r"|\b\d[\d,]*(?:\.\d+)? ?(?:USD|EUR|GBP|JPY|CHF|CAD|AUD|dollars|euros|"
                          r"pounds)\b|(?<![\w.])\d+(?:\.\d+)?%")),
    ("version", re.compile(r"\bv?\d+\.\d+\.\d+(?:[-+.][\w.]+)?\b|\bv\d+(?:\.\d+)?\b")),
    ("ident", re.compile(r"(?<![\w/.@:-])[A-Za-z0-9_]+(?:(?:::|[/:.@-])[A-Za-z0-9_]+)+"
                         r"|(?<![\w/.@:-])[A-Za-z0-9]*_[A-Za-z0-9_]*[A-Za-z0-9]")),
    ("id", re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_-]{3,}\b")),
    ("code", re.compile(r"(?<![\w'-])[A-Z]{3,}(?![\w'-])")),
    ("symbol", re.compile(r"\b(?:[a-z]+[A-Z]|[A-Z][a-z]+[A-Z])[A-Za-z]*\b")),
    ("number", re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d{3,}(?:\.\d+)?(?![\w.])"
                          r"|(?<![\w.])\d+\.\d+(?![\w.])")),
    ("name", re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b")),
    ("entity", re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{2,}\b")),
)

_PLUMBING = re.compile(r"^(?:toolu_|call_|srvtoolu_|tool_)", re.I)
_ORDINAL = re.compile(r"^\d+(?:st|nd|rd|th)$", re.I)
_NOISY_KINDS = frozenset({"name", "number", "entity", "code"})
_NAME_STOP = frozenset({"The", "This", "That", "These", "Those", "Thank", "Thanks", "Hello", "Hi",
                        "Hey", "Yes", "No", "Okay", "Sure", "Please", "Great", "Sorry", "Dear",
                        "What", "When", "Where", "Which", "Who", "Why", "How", "I", "It", "We",
                        "You", "My", "Our", "Your", "And", "But", "If", "So", "Let", "Here",
                        "Wow", "Yeah", "Bye", "Oh", "Ah", "Aw", "Awesome", "Cool", "Nice", "Good",
                        "Congrats", "Congratulations", "Welcome", "Morning", "Night", "Love"})
#: English words written in capitals for emphasis (not codes). General English, not tuned to
#: any data set.
_EMPHASIS = frozenset({"NOT", "NEVER", "ALWAYS", "MUST", "ONLY", "DO", "DONT", "NO", "YES", "AND",
                       "THE", "ALL", "ANY", "NONE", "VERY", "IMPORTANT", "NOTE", "WARNING",
                       "PLEASE", "STOP", "NOW", "OK", "OKAY", "THIS", "THAT", "YOU", "FOR",
                       "BUT", "WITH", "NEW", "END", "LOL", "OMG", "WOW", "HAHA", "THANKS"})
#: Common English pairs written with a slash; not identifiers.
_SLASH_WORDS = frozenset({"and/or", "he/she", "his/her", "him/her", "s/he", "yes/no", "on/off",
                          "w/o", "n/a", "i/o", "either/or", "and/or"})
_CLAIMED = b"\x01"


def _ident_ok(item: str, prose: bool) -> bool:
    """Whether a joined token is an identifier (not "e.g.", "well-known", "and/or")."""
    if item.lower() in _SLASH_WORDS:
        return False
    parts = re.split(r"::|[/:.@_-]", item)
    if not all(parts) or (":" in item and all(p.isdigit() for p in parts)):
        return False  # empty parts, or a clock time / ratio ("1:56", "3:1")
    strong = (any(ch.isdigit() for ch in item) or "@" in item
              or any(ch.isupper() for ch in item[1:]) or "/" in item)
    if not prose and "/" in item[:1]:
        return False   # an absolute path in tool output: a line of a listing, kept as path
    if strong or "_" in item or "::" in item:
        return True
    if "." in item:
        # dotted names (os.path.join, example.com), not abbreviations (e.g, i.e)
        return max(len(p) for p in parts) >= 2 and min(len(p) for p in parts) >= 2
    # hyphens or colons between lower-case words: ordinary English (well-known, follow-up),
    # unless there are 4+ parts (a slug: lost-and-found-items-v)
    return len(parts) >= 4 and ":" not in item


_CAPS_WORD = re.compile(r"[A-Z]{2,}")


def _shouted(text: str, a: int, b: int) -> bool:
    """Whether the capitalised word at [a, b) stands next to another one with only a space
    between ("DO NOT DO THIS EVER"): then it is emphasis, not a code ("JFK", "PAMNT, QXRT")."""
    prev = text[max(0, a - 31):a - 1].rsplit(" ", 1)[-1] if text[a - 1:a] == " " else ""
    nxt = text[b + 1:b + 31].split(" ", 1)[0] if text[b:b + 1] == " " else ""
    return bool(_CAPS_WORD.fullmatch(prev) or _CAPS_WORD.fullmatch(nxt))


def extract_typed(text: str, *, prose: bool = True) -> list[tuple[int, int, str, str]]:
    """The must-keep items of ``text`` with their place and kind: ``(start, end, kind,
    item)`` in order of position (not deduplicated). Kinds as in the module table.
    Linear in ``len(text)``."""
    # taken[i] == 1 when character i belongs to an item already claimed; a match overlaps
    # an earlier item when its span holds a 1 (bytearray.find: linear in the span, so the
    # whole extraction is linear in len(text))
    taken = bytearray(len(text))
    found: list[tuple[int, int, str, str]] = []
    for kind, pat in _PATTERNS:
        if not prose and kind in _NOISY_KINDS:
            continue
        for m in pat.finditer(text):
            a, b = m.span()
            if taken.find(1, a, b) != -1:
                continue
            item = m.group(0).strip()
            if kind in ("id", "ident") and (_PLUMBING.match(item) or _ORDINAL.match(item)
                                            or text[b:b + 2] in ('":', "':")):
                continue
            if kind == "ident" and not _ident_ok(item, prose):
                continue
            if kind == "code" and (item in _EMPHASIS or _shouted(text, a, b)):
                continue
            if kind == "entity" and item in _NAME_STOP:
                continue
            if kind == "name":
                words = item.split(" ")
                while words and words[0] in _NAME_STOP:
                    a += len(words[0]) + 1
                    words.pop(0)
                if len(words) < 2:
                    continue
                item = " ".join(words)
            taken[a:b] = _CLAIMED * (b - a)
            found.append((a, b, kind, item))
    found.sort()
    return found


def extract_facts(text: str, *, prose: bool = True) -> list[str]:
    """Must-keep items of ``text``, deduplicated, in order of first appearance.

    Args:
        text: any text.
        prose: True for what people wrote; False for tool output (no ``name``, ``entity``,
            ``number`` or ``code`` items).

    Returns:
        The items as they are written (identifiers whole, e.g. ``spike/hyopr-35``).
        Linear in ``len(text)``.
    """
    return list(dict.fromkeys(item for _, _, _, item in extract_typed(text, prose=prose)))


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
