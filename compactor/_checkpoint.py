"""The checkpoint: what a compaction keeps, as state rather than prose.

A :class:`Checkpoint` is a typed, versioned record of a session's state: the task, the
rules (kept whole; a rule written as two sentences stays one item), the user's
preferences, decisions with their reasons, facts as slot -> latest value, open tasks,
pending tool calls, artifacts and identifiers, errors, the next action, tool-call counts
and notes (the most informative other sentences). Each item carries the archive ordinals
of the messages it came from, so ``recall`` can rehydrate them.

Four pure functions:

- :func:`update` merges new messages into the previous checkpoint. A later value for a
  known slot *replaces* the old one ("the budget is now $300"); the replaced values are
  returned as :class:`Supersession` records (for the ledger).
- :func:`render` writes a checkpoint as text in a stable section order (cache-friendly),
  every line ending with its ordinals (``[#12]``), fitting a token budget by priority
  (task, rules and latest facts before routine items).
- :func:`parse` reads rendered text back (a summary text alone is enough to continue).
- :func:`validate_llm_checkpoint` reads a model's JSON answer against
  :func:`checkpoint_json_schema`, repairing simple issues.

Slot detection is dependency-free: typed values from :mod:`compactor._facts` (amounts,
dates, identifiers, versions, numbers...), number words ("three hundred dollars"), and
the phrase around a value ("<key> is <value>", "set <key> to <value>", "keep <key> under
<value>", "use <value> <key>"). Keys match when their content words overlap; a sentence
marked as an update ("now", "instead", "actually", "switch to"...) whose key matches no
slot replaces the most recent slot whose value has the same shape or kind.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import re
from bisect import bisect_left
from functools import lru_cache
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ._errors import SummarizerError
from ._facts import extract_typed, missing
from ._format import SUMMARY_CLOSE, SUMMARY_OPEN, Format, blocks, tool_result_text
from ._plan import TTL_KEY
from ._tokens import TokenCounter

#: The schema version written in every checkpoint; :func:`from_json` accepts this one.
CHECKPOINT_VERSION = 1

#: Section titles in render order (stable: a cached prompt prefix stays byte-equal when a
#: section does not change).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("goal", "Task"),
    ("rules", "Rules and constraints"),
    ("preferences", "User preferences"),
    ("facts", "Facts (latest values)"),
    ("decisions", "Decisions"),
    ("open_tasks", "Open tasks"),
    ("pending_calls", "Pending tool calls"),
    ("errors", "Errors seen"),
    ("next_action", "Next action"),
    ("artifacts", "Artifacts and identifiers"),
    ("notes", "Notes"),
)
_TITLE_TO_KEY = {t.lower(): k for k, t in SECTIONS}
_HEADER = "Checkpoint v{v} ({n} messages)"
_HEADER_RE = re.compile(r"^Checkpoint v(\d+) \((\d+) messages\)")
_TOOLS = "Tool calls:"
_KEY_FACTS = "Key facts:"
_ORD_TAG = re.compile(r"\s*\[#(\d+(?:(?:,\s*|-)#?\d+)*)\]\s*$")

#: Storage caps (items kept in the JSON state per section; the oldest routine items go
#: first). They bound the session state; rendering picks what fits the budget.
CAPS = {"goal": 8, "rules": 60, "preferences": 40, "facts": 120, "decisions": 40,
        "open_tasks": 30, "pending_calls": 20, "errors": 30, "artifacts": 500, "notes": 300}


# --------------------------------------------------------------------------- schema

@dataclass
class Item:
    """One line of a section.

    Attributes:
        text: the sentence(s) or line, as written (rules kept whole).
        ordinals: archive ordinals of the messages it came from (may be empty).
        slot: the fact slot this item states, when it states one ("" otherwise); an item
            whose slot gets a newer value is dropped. For an artifact: its kind (``path``,
            ``id``, ``date``... see ``compactor._facts``).
        why: for decisions, the reason given ("because ...").
        score: information score (ranks notes and routine items for the budget).
    """

    text: str
    ordinals: list[int] = field(default_factory=list)
    slot: str = ""
    why: str = ""
    score: float = 0.0


@dataclass
class Fact:
    """A slot's latest value. ``ordinal``: the archive ordinal of the message that set it.
    ``kind``: the value's kind (``amount``, ``date``, ``ident``, ``word``...). ``limit``:
    the value is a bound ("keep spend under $300", "the budget cap is $800")."""

    slot: str
    value: str
    kind: str = "word"
    text: str = ""
    ordinal: int | None = None
    limit: bool = False


@dataclass
class Supersession:
    """A slot value replaced by a later one (for the ledger)."""

    slot: str
    old: str
    new: str
    old_ordinal: int | None
    new_ordinal: int | None


@dataclass
class Checkpoint:
    """A session's state after the messages it covers (see the module docstring).

    ``messages``: how many messages it summarizes in total. ``tools``: tool name ->
    ``[succeeded, failed]`` call counts. ``next_action`` holds at most one item.
    """

    version: int = CHECKPOINT_VERSION
    messages: int = 0
    goal: list[Item] = field(default_factory=list)
    rules: list[Item] = field(default_factory=list)
    preferences: list[Item] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    decisions: list[Item] = field(default_factory=list)
    open_tasks: list[Item] = field(default_factory=list)
    pending_calls: list[Item] = field(default_factory=list)
    errors: list[Item] = field(default_factory=list)
    next_action: list[Item] = field(default_factory=list)
    artifacts: list[Item] = field(default_factory=list)
    notes: list[Item] = field(default_factory=list)
    tools: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (plain types only)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Checkpoint":
        """Read :meth:`to_json` output back.

        Raises:
            SummarizerError: not a mapping, an unknown version, or a malformed field.
        """
        if not isinstance(data, Mapping):
            raise SummarizerError(f"checkpoint must be a JSON object, got {type(data).__name__}")
        v = data.get("version", CHECKPOINT_VERSION)
        if v != CHECKPOINT_VERSION:
            raise SummarizerError(f"checkpoint version {v!r} is not {CHECKPOINT_VERSION}")
        try:
            cp = cls(messages=int(data.get("messages", 0) or 0))
            for key, _ in SECTIONS:
                raw = data.get(key) or []
                if isinstance(raw, (str, Mapping)):
                    raw = [raw]
                if key == "facts":
                    cp.facts = [_fact_from(x) for x in raw]
                else:
                    setattr(cp, key, [_item_from(x) for x in raw])
            tools = data.get("tools") or {}
            cp.tools = {str(k): [int(v[0]), int(v[1])] for k, v in dict(tools).items()}
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise SummarizerError(f"malformed checkpoint: {e}") from e
        return cp


def _ords(x: Any) -> list[int]:
    if x is None:
        return []
    if isinstance(x, (int, str)):
        x = [x]
    out = []
    for o in x:
        try:
            out.append(int(str(o).lstrip("#")))
        except ValueError:
            continue
    return out


def _item_from(x: Any) -> Item:
    if isinstance(x, str):
        return Item(x.strip())
    if not isinstance(x, Mapping) or not str(x.get("text", "")).strip():
        raise ValueError(f"an item needs a non-empty 'text', got {x!r:.80}")
    return Item(str(x["text"]).strip(), _ords(x.get("ordinals")), str(x.get("slot") or ""),
                str(x.get("why") or ""), float(x.get("score") or 0.0))


def _fact_from(x: Any) -> Fact:
    if isinstance(x, str):
        slot, _, value = x.partition(":")
        if not value.strip():
            raise ValueError(f"a fact needs 'slot: value', got {x!r:.80}")
        return Fact(_norm_key(slot) or slot.strip(), value.strip())
    if not isinstance(x, Mapping) or not str(x.get("value", "")).strip():
        raise ValueError(f"a fact needs a non-empty 'value', got {x!r:.80}")
    o = _ords(x.get("ordinal"))
    return Fact(str(x.get("slot") or "").strip() or "value", str(x["value"]).strip(),
                str(x.get("kind") or "word"), str(x.get("text") or ""), o[0] if o else None,
                bool(x.get("limit", False)))


# --------------------------------------------------------------------------- detection

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_BULLET = re.compile(r"^(?:[-*\u2022>#]+|\d+[.)])\s+")
_SPEAKER = re.compile(r"^([A-Z][\w .'-]{0,30}):\s+")
_SESSION = re.compile(r"^\[Session [^\]]*\]\s*")

# A rule is a directive: an imperative ("Never ...", "Always ...", "Do not ...", "Only ...",
# "Make sure ...") or a modal of obligation with a subject other than the speaker ("you
# must", "we can't", "the agent should never", "X is not allowed"). "I always ..." (habit)
# and "it must have been ..." (inference) are not rules.
_RULE = re.compile(r"(?:^(?:[A-Z][\w .'-]{0,30}:\s+)?|(?<=[.!?;:] )|(?<=\n))(?:please\s+)?(?:never|always|only|"
                   r"do not|don't|make sure|ensure|avoid|under no circumstances|no more than|"
                   r"at most|at least|nothing|no one|none of)\b"
                   r"|\b(?:you|we|they|it|he|she|agents?|assistants?|everyone|all|each|every \w+|"
                   r"the \w+(?: \w+)?)\s+(?:must(?!'ve| have| be| feel| look| seem| sound| get)(?:n't| not)?|should (?:never|always|not|only)|"
                   r"shouldn't|have to|has to|need to|needs to|cannot|can't|may not|mustn't|"
                   r"(?:is|are) (?:not )?(?:allowed|required|forbidden|permitted)|"
                   r"(?:will|would) never|may only|can only)\b"
                   r"|\b(?:is|are) (?:not allowed|forbidden|mandatory|required|prohibited)\b"
                   r"|\bwithout exception\b", re.I | re.M)
_RULE_CONT = re.compile(r"^(?:this|that|it|these|those|otherwise|unless|except|even|also|"
                        r"and|or|but|because|so|in particular|including|especially|"
                        r"the same|same)\b", re.I)
_GOAL = re.compile(r"\b(?:i want|i need|i'd like|i would like|help me|my goal|the goal|"
                   r"our goal|the task|my task|our task|we need to|i'm trying to|i am trying to|"
                   r"objective|please (?:help|find|book|fix|implement|write|create|build|add|"
                   r"make|change|update|cancel|investigate))\b", re.I)
_PREF = re.compile(r"\b(?:i prefer|i'd prefer|i would prefer|i like|i love|i hate|i dislike|"
                   r"i'd rather|i would rather|prefer(?:ably|red)?|my favou?rite|call me|"
                   r"please use|i want (?:it|them|everything) in|use \w+ units)\b", re.I)
_DECISION = re.compile(r"\b(?:decided|decide to|we'll go with|let's go with|i'll go with|"
                       r"we will go with|chose|settled on|will use|we'll use|i'll use|"
                       r"opted|agreed to|the plan is|we will)\b", re.I)
_WHY = re.compile(r"\b(?:because|since|so that|due to|as it|as they|given that)\b\s*(.*)$", re.I)
_OPEN = re.compile(r"\b(?:todo|to-do|next step|still need|still have to|remaining|left to|"
                   r"pending|will need to|follow up|not yet|have yet to|outstanding)\b", re.I)
_NEXT = re.compile(r"\b(?:next,? i|i'll|i will|let me|now i|then i|next step|i'm going to|"
                   r"i am going to)\b", re.I)
_ERROR = re.compile(r"\b(?:error|exception|traceback|failed|failure|fatal|denied|not found|"
                    r"invalid|timeout|timed out|refused|unable)\b", re.I)
_ERROR_LINE = re.compile(r"\s*(?:error|exception|traceback|fatal)\b", re.I)
_UPDATE = re.compile(r"\b(?:now|instead|actually|change[sd]?|changing|switch(?:ed|ing)?|"
                     r"update[sd]?|no longer|from now on|rather|correction|make it|moved?|"
                     r"revised?|scratch that|replace[sd]?)\b", re.I)

_CUES = {"rule": _RULE, "goal": _GOAL, "pref": _PREF, "decision": _DECISION, "open": _OPEN,
         "next": _NEXT, "error": _ERROR}

_STOP = frozenset("""a an the and or but so of to in on at for with from by is are was were be been
being it its this that these those i you he she we they me him her us them my your his our their
just really very too also oh wow yeah yes no okay ok hey hi hello thanks thank please now
actually instead still currently set keep use using make going go let lets will would should
can could may might must do does did done have has had new change changed switch update
updated there here then than what which who whom whose when where why how all any each
every some such only own same other into over under about after before again further once
not""".split())

# The phrase before a value, read word by word from the end (fast: no regex search over
# the sentence): "<key> is [now] <value>", "set <key> [from X] to <value>", "keep <key>
# under <value>", "switch [over] to <value>".
_COPULAS = ("is", "are", "was", "were", "be", "=", ":", "becomes", "became", "remains", "of",
            "at", "equals", "to")
_ADVERBS = frozenset({"now", "still", "currently", "actually", "about", "around", "only", "set",
                      "changed", "moved", "updated", "going", "exactly", "roughly", "just"})
_SET_VERBS = frozenset({"set", "change", "switch", "move", "update", "increase", "decrease",
                        "reduce", "raise", "lower", "bump", "cut", "extend", "push", "shift",
                        "make", "adjust", "reset", "lift", "drop"})
_LIMITS = (("at", "most"), ("up", "to"), ("no", "more", "than"), ("less", "than"),
           ("more", "than"), ("at", "least"), ("capped", "at"), ("limited", "to"), ("under",),
           ("below",), ("within",), ("over",), ("above",), ("max",), ("maximum",), ("minimum",))
_SWITCH_VERBS = frozenset({"switch", "switching", "switched", "move", "moving", "moved",
                           "migrate", "migrating", "change", "changing", "changed", "go", "going",
                           "swap", "swapping"})
_WORD = re.compile(r"[\w'$-]+|[,;:.!?()=]")


#: Nouns that name a bound (general English).
_LIMIT_NOUNS = frozenset({"cap", "limit", "max", "maximum", "ceiling", "budget", "minimum", "min",
                          "floor", "threshold", "allowance", "quota"})


def _is_limit(key: str, pre: str) -> bool:
    """Whether a value is a bound: its key names one ("budget cap") or a limit phrase
    ("under", "at most", "no more than") stands right before it."""
    if set(key.split()) & _LIMIT_NOUNS:
        return True
    toks = [t.lower() for t in _WORD.findall(pre)[-4:]]
    return any(len(toks) >= len(lim) and tuple(toks[-len(lim):]) == lim for lim in _LIMITS)


def _phrase_key(pre: str, numeric: bool = True) -> tuple[str, bool]:
    """``(key, keyed)`` from the words before a value: ``keyed`` when a known phrase
    shape names the slot; ``("", True)`` for a bare "switch to" (slot to be inferred)."""
    toks = [t.lower() for t in _WORD.findall(pre)[-10:]]
    if toks and toks[-1] == ":" and len(toks) >= 2:
        toks = toks[:-1] + ["is"]
    end = len(toks)
    while end and toks[end - 1] in _ADVERBS:
        end -= 1

    def key_before(j: int, n: int = 3) -> str:
        words: list[str] = []
        k = j - 1
        while k >= 0 and len(words) < n and toks[k] not in (",", ";", ".", "!", "?", "(", ")"):
            words.insert(0, toks[k])
            k -= 1
        return _norm_key(" ".join(words))

    # set <key> [from X] to
    if end and toks[end - 1] in ("to", "at"):
        j = end - 1
        for v in range(j - 1, max(-1, j - 7), -1):
            if toks[v] in _SET_VERBS:
                ws = toks[v + 1:j]
                if "from" in ws:
                    ws = ws[:ws.index("from")]
                key = _norm_key(" ".join(ws))
                if key:
                    return key, True
                break
            if toks[v] in _SWITCH_VERBS or (toks[v] in ("over", "back", "it", "everything") and v
                                            and toks[v - 1] in _SWITCH_VERBS):
                return "", True
    # keep <key> under (limits are numeric)
    for lim in (_LIMITS if numeric else ()):
        n = len(lim)
        if end >= n and tuple(toks[end - n:end]) == lim:
            key = key_before(end - n, 2)
            if key:
                return key, True
    # <key> is
    if end and toks[end - 1] in _COPULAS and toks[end - 1] != "to" and (
            numeric or toks[end - 1] not in ("of", "at")):
        j = end - 1
        while j and toks[j - 1] in ("will", "should", "shall", "has", "needs", "must", "would"):
            j -= 1
        key = key_before(j)
        if key:
            return key, True
    return "", False


_USE_WORD = re.compile(r"\b(?:use|using|prefer|want|switch to|go with|in)\s+(?:the\s+)?"
                       r"(?P<val>[a-z][\w-]{2,})\s+(?P<key>units|format|style|language|currency|"
                       r"time ?zone|mode|theme|tone|system|version|region|zone|model|database|"
                       r"engine|provider|framework|library|plan|tier|layout|font|color|colour)\b", re.I)

_NUM_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_NUM_WORDS.update({w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())})
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_WORD_AMOUNT = re.compile(r"\b((?:(?:%s|%s|and|a)[\s-]+)*(?:%s|%s))\s+(dollars|euros|pounds|bucks|"
                          r"usd|eur|gbp|percent|per cent)\b" % (
                              "|".join(_NUM_WORDS), "|".join(_SCALES),
                              "|".join(_NUM_WORDS), "|".join(_SCALES)), re.I)

#: value kinds that can fill a slot (names, entities and symbols are things, not values)
_VALUE_KINDS = frozenset({"amount", "date", "version", "ident", "id", "number", "path", "url",
                          "email", "code"})


def words_to_number(text: str) -> int | None:
    """``"three hundred"`` -> 300; None when ``text`` is not a number in words."""
    total, cur, seen = 0, 0, False
    for w in re.split(r"[\s-]+", text.lower()):
        if w in ("and", "a", ""):
            continue
        if w in _NUM_WORDS:
            cur += _NUM_WORDS[w]
            seen = True
        elif w == "hundred":
            cur = max(cur, 1) * 100
            seen = True
        elif w in _SCALES:
            total += max(cur, 1) * _SCALES[w]
            cur, seen = 0, True
        else:
            return None
    return total + cur if seen else None


@lru_cache(maxsize=65536)
def _stem(w: str) -> str:
    w = w.lower().strip("'")
    for suf in ("ies", "es", "s"):
        if len(w) > 4 and w.endswith(suf) and not w.endswith("ss"):
            return w[: -len(suf)] + ("y" if suf == "ies" else "")
    return w


def _norm_key(key: str) -> str:
    words = [_stem(w) for w in re.findall(r"[A-Za-z][\w'-]*", key)]
    words = [w for w in words if w not in _STOP and len(w) > 1]
    return " ".join(words[-3:])


def _keys_match(a: str, b: str) -> bool:
    if not a or not b:
        return False
    wa, wb = set(a.split()), set(b.split())
    return wa <= wb or wb <= wa


def _shape(v: str) -> str:
    return re.sub(r"[a-z]+", "a", re.sub(r"[A-Z]+", "A", re.sub(r"\d+", "9", v)))


@dataclass
class _Value:
    start: int
    end: int
    kind: str
    value: str


#: How the assistant states a value: a copula or "set ... to" right before it.
_STATED = re.compile(r"\b(?:is|are|was|were|be|becomes|became|equals|=|set to|changed to|"
                     r"updated to|now)\s*`?$", re.I)

_CURRENCY_WORDS = ("dollar", "euro", "pound", "buck", "usd", "eur", "gbp", "percent", "per cent")


def _values(sentence: str, typed: Sequence[tuple[str, str]] | None = None) -> list[_Value]:
    """The values of a sentence: typed items (``(kind, item)`` pairs from
    :func:`extract_typed`, in order) located in it, plus amounts in words."""
    if typed is None:
        typed = [(k, v) for _, _, k, v in extract_typed(sentence)]
    out: list[_Value] = []
    cur = 0
    for k, v in typed:
        at = sentence.find(v, cur)
        if at < 0:
            continue
        cur = at + len(v)
        if k in _VALUE_KINDS:
            out.append(_Value(at, cur, k, v))
    low = sentence.lower()
    if any(w in low for w in _CURRENCY_WORDS):
        for m in _WORD_AMOUNT.finditer(sentence):
            if words_to_number(m.group(1)) is not None and not any(
                    v.start < m.end() and m.start() < v.end for v in out):
                out.append(_Value(m.start(), m.end(), "amount", m.group(0)))
        out.sort(key=lambda v: v.start)
    return out


def detect_slots(sentence: str, role: str = "user",
                 typed: Sequence[tuple[str, str]] | None = None
                 ) -> list[tuple[str, str, str, bool, int]]:
    """The slot statements of one sentence: ``(key, value, kind, keyed, at)`` tuples, where
    ``key`` is the normalized slot name ("budget", "deploy region"), ``keyed`` says the
    key came from the phrase around the value (not a fallback from nearby words) and
    ``at`` is the value's offset in ``sentence``.

    Only the user's sentences state preferences by ``use <value> <key>``; any speaker's
    "<key> is <value>" / "set <key> to <value>" / "keep <key> under <value>" count.
    ``typed``: the sentence's ``(kind, item)`` pairs when the caller has them.
    """
    found: list[tuple[str, str, str, bool, int]] = []
    for v in _values(sentence, typed):
        pre = sentence[max(0, v.start - 96):v.start]  # the phrase before the value
        key, keyed = _phrase_key(pre, v.kind in ("amount", "number", "date", "version"))
        if not key:
            keyed = False
            # fallback: the content words just before the value
            key = _norm_key(" ".join(re.findall(r"[A-Za-z][\w'-]*", pre)[-4:]))
        found.append((key or v.kind, v.value, v.kind, keyed, v.start))
    if role == "user" and " " in sentence:
        for m in _USE_WORD.finditer(sentence):
            found.append((_norm_key(m.group("key")) or m.group("key").lower(), m.group("val"),
                          "word", True, m.start("val")))
    return found


#: Words dropped when a note is compressed: articles, forms of "be", interjections and
#: intensifiers. Negations and prepositions are never dropped (they carry meaning).
#: Interjections only: articles, copulas and intensifiers stay, because a later question's
#: answer is often a phrase that holds them ("a cup with a dog face on it", "once or twice
#: a year"); dropping them saved ~7% of a note's tokens and lost 10 of 314 LoCoMo answers
#: (``compactor replay locomo_dev.jsonl --window 25%``, before/after in one run).
_FILLER = frozenset("""oh wow yeah yep um uh hey hi hello lol haha omg""".split())


def compress(sentence: str) -> str:
    """Drop interjections (see ``_FILLER``) from a sentence, keeping every other word, its
    order and its punctuation: "Caroline: Oh wow, I was so happy!" -> "Caroline: I was so
    happy!"."""
    out: list[str] = []
    for w in sentence.split(" "):
        core = w.strip(".,!?;:\"()").lower()
        if core in _FILLER and not any(ch.isdigit() for ch in w):
            tail = w[len(w.rstrip(".,!?;:")):]
            end = tail.lstrip(",;")   # a sentence end carries over; a comma does not
            if end and out and not out[-1].endswith(":"):
                out[-1] = out[-1].rstrip(",;") + end
            continue
        out.append(w)
    return " ".join(out)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of each sentence of ``text`` (split as :func:`_sentences`)."""
    out: list[tuple[int, int]] = []
    a = 0
    for m in _SPLIT.finditer(text):
        if m.start() > a:
            out.append((a, m.start()))
        a = m.end()
    if a < len(text):
        out.append((a, len(text)))
    return out


_BACKREF = re.compile(r"^(?:\S+\s+){0,2}(?:it|this|that|these|those|them|such)\b", re.I)


def _continues(sentence: str) -> bool:
    """Whether a sentence continues the rule before it: it opens with a connective
    ("This applies...", "Unless...", "Otherwise...") or refers back within its first
    three words ("Skipping it needs approval.")."""
    return bool(_RULE_CONT.match(sentence) or _BACKREF.match(sentence))


def _strip_speaker(s: str) -> str:
    return _SPEAKER.sub("", _SESSION.sub("", s))


def _sentences(text: str) -> list[str]:
    out = []
    for s in _SPLIT.split(text):
        s = _BULLET.sub("", " ".join(s.split()))
        if s:
            out.append(s)
    return out


def _content(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[A-Za-z0-9][\w'-]+", text)} - _STOP


# --------------------------------------------------------------------------- update

def _add_ordinals(it: Item, ords: Sequence[int]) -> None:
    """Add ``ords`` to an item's ordinals: at most 8 kept (the first ones and the latest)."""
    for o in ords:
        if o in it.ordinals:
            continue
        if len(it.ordinals) >= 8:
            it.ordinals[-1] = o
        else:
            it.ordinals.append(o)


def _cap(items: list[Item], n: int) -> list[Item]:
    """At most ``n`` items: drop the lowest-scored, oldest first; keep the order."""
    if len(items) <= n:
        return items
    keep = sorted(range(len(items)), key=lambda i: (-items[i].score, -i))[:n]
    return [items[i] for i in sorted(keep)]


_CAPWORD = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_NUM = re.compile(r"\b\d[\d,.:/-]*\b")


#: relative time anchors ("last Friday", "two weeks ago", "yesterday"): a sentence that
#: places an event in time states something that happened
_TIME = re.compile(r"\b(?:yesterday|today|tonight|tomorrow|ago|recently|lately|(?:last|next|this)\s+"
                   r"(?:week|weekend|month|year|night|summer|winter|spring|fall|autumn)|"
                   r"(?:mon|tues|wednes|thurs|fri|satur|sun)day)\b", re.I)
_QUOTED = re.compile(r"(?:\"(?=\w)[^\"\n]{1,80}(?<=[\w.?!])\"|\u201c[^\u201d\n]{2,80}\u201d)(?!\s*:)"
                     r"|(?<!\w)['\u2018][A-Z][^'\u2019\n]{1,80}['\u2019](?!\w)")


def specificity(text: str) -> float:
    """How specific a line is, as a weight >= 0.5 (1.0 for a plain line): names
    (capitalised words inside the sentence) +0.5 each, numbers +0.3 each, quoted titles
    +1.0 each, a time anchor (:data:`_TIME`) +0.5; a question counts half (it asks, it does
    not state). These are the surface marks of the specific facts a reader asks about
    later (named entities, quantities, dates: the cues of extractive summarization since
    Edmundson 1969). ``python benchmarks/note_features.py`` prints, for each mark, how much
    more often a note that has it holds a probe answer on the shared transcripts (LoCoMo:
    names 1.9x, numbers 3.7x, quoted titles 4.1x, time anchors 1.5x, questions 0.57x)."""
    body = _strip_speaker(text)
    w = 1.0 + 0.5 * len(_CAPWORD.findall(body)) + 0.3 * len(_NUM.findall(body)) \
        + 1.0 * len(_QUOTED.findall(body)) + (0.5 if _TIME.search(body) else 0.0)
    return 0.5 * w if body.rstrip().endswith("?") else w


def _score(sentence: str, n_values: int) -> float:
    """Information score: content-word density, identifier-like items (``n_values``),
    capitalised names and numbers; a question without an item counts 0.6 of that;
    fewer than 3 words: 0."""
    words = re.findall(r"[A-Za-z0-9'$%]+", sentence)
    if len(words) < 3:
        return 0.0
    content = [w for w in words if w.lower() not in _STOP]
    sc = len(content) / len(words) + 1.5 * n_values + 0.6 * len(_CAPWORD.findall(sentence)) \
        + 0.5 * len(_NUM.findall(sentence))
    return 0.6 * sc if sentence.endswith("?") and not n_values else sc


class _Updater:
    """Merges messages into a checkpoint (state for one :func:`update` call)."""

    def __init__(self, cp: Checkpoint) -> None:
        self.cp = cp
        self.index: dict[str, dict[str, Item]] = {}
        self.superseded: list[Supersession] = []
        self.names: dict[str, str] = {}
        self.open_calls: dict[str, Item] = {}

    def add(self, section: str, new: Item) -> None:
        """Append ``new`` to ``section`` unless the same text is there (then merge its
        ordinals); O(1) with a per-section index."""
        items: list[Item] = getattr(self.cp, section)
        idx = self.index.get(section)
        if idx is None:
            idx = self.index[section] = {" ".join(it.text.lower().split()): it for it in items}
        k = " ".join(new.text.lower().split())
        it = idx.get(k)
        if it is None:
            items.append(new)
            idx[k] = new
            return
        _add_ordinals(it, new.ordinals)
        it.score = max(it.score, new.score)

    def set_fact(self, key: str, value: str, kind: str, keyed: bool, text: str,
                 ordinal: int | None, marked: bool, limit: bool = False) -> str:
        """Set slot ``key`` (or the slot this update refers to) to ``value``; returns the
        slot's key."""
        facts = self.cp.facts
        idx = next((i for i in range(len(facts) - 1, -1, -1)
                    if _keys_match(facts[i].slot, key)), None) if keyed or marked else None
        if idx is None and not keyed:
            idx = next((i for i in range(len(facts) - 1, -1, -1) if facts[i].slot == key), None)
        if idx is None and limit and kind in ("amount", "number"):
            # a bound restated in other words ("budget cap $800" -> "keep spend under $300")
            idx = next((i for i in range(len(facts) - 1, -1, -1)
                        if facts[i].limit and facts[i].kind == kind), None)
        if idx is None and marked and kind != "word":
            # an update of a value that was stated without a slot ("Deploy to eu-north-5."
            # ... "Switch to eu-west-2."): the latest identifier the user wrote that has the
            # same kind and shape is the old value
            arts = self.cp.artifacts
            low_v = value.lower()
            j = next((i for i in range(len(arts) - 1, -1, -1)
                      if arts[i].slot == kind and arts[i].score >= 3.0
                      and arts[i].text.lower() != low_v and _shape(arts[i].text) == _shape(value)
                      and not any(f.value.lower() == arts[i].text.lower() for f in facts)), None)
            if j is not None:
                old_it = arts[j]
                self.superseded.append(Supersession(key, old_it.text, value,
                                                    old_it.ordinals[0] if old_it.ordinals else None,
                                                    ordinal))
                self._drop_slot(key, old_it.text)
                facts.append(Fact(key, value, kind, text, ordinal, limit))
                return key
        if idx is None and marked:
            # an update with no matching key: the latest slot whose value looks alike
            idx = next((i for i in range(len(facts) - 1, -1, -1)
                        if facts[i].kind == kind and _shape(facts[i].value) == _shape(value)), None)
        if idx is not None:
            old = facts[idx]
            if " ".join(old.value.lower().split()) == " ".join(value.lower().split()):
                if ordinal is not None:
                    old.ordinal = ordinal
                return old.slot
            self.superseded.append(Supersession(old.slot, old.value, value, old.ordinal, ordinal))
            self._drop_slot(old.slot, old.value)
            del facts[idx]
            key = old.slot if not keyed else key
        facts.append(Fact(key, value, kind, text, ordinal, limit))
        return key

    def _drop_slot(self, slot: str, old_value: str) -> None:
        """Remove items that stated the superseded value of ``slot``."""
        self.index.clear()
        low = old_value.lower()
        self.cp.artifacts = [it for it in self.cp.artifacts if it.text.lower() != low]
        for sec in ("rules", "preferences", "decisions", "notes", "goal", "open_tasks", "next_action"):
            items: list[Item] = getattr(self.cp, sec)
            setattr(self.cp, sec, [it for it in items
                                   if not (it.slot == slot or (it.slot and _keys_match(it.slot, slot)
                                                               and low in it.text.lower())
                                           or (sec == "notes" and low in it.text.lower()))])

    def prose(self, text: str, role: str, ordinal: int | None) -> None:
        """Read what a person (``role`` "user") or the assistant wrote. Linear in
        ``len(text)``: each cue pattern and the identifier extraction run once over the
        whole text; sentences look their cues up by position."""
        ords = [ordinal] if ordinal is not None else []
        spans = _sentence_spans(text)
        typed = extract_typed(text)
        cues = {name: [m.start() for m in pat.finditer(text)] for name, pat in _CUES.items()}

        def has(name: str, a: int, b: int) -> bool:
            pos = cues[name]
            k = bisect_left(pos, a)
            return k < len(pos) and pos[k] < b

        t = 0
        i = 0
        while i < len(spans):
            a, b = spans[i]
            # a rule continued in the next sentence ("Never X. This applies to Y.") stays whole
            if role == "user" and has("rule", a, b):
                while i + 1 < len(spans) and _continues(
                        _strip_speaker(" ".join(text[spans[i + 1][0]:spans[i + 1][1]].split()))):
                    i += 1
                    b = spans[i][1]
            i += 1
            s = _BULLET.sub("", " ".join(text[a:b].split()))
            if not s:
                continue
            body = _strip_speaker(s)
            while t < len(typed) and typed[t][0] < a:
                t += 1
            mine = []
            while t < len(typed) and typed[t][0] < b:
                mine.append(typed[t])
                t += 1
            slots = detect_slots(body, role, [(k, v) for _, _, k, v in mine])
            slot_key = ""
            for key, value, kind, keyed, at in slots:
                pre = body[max(0, at - 64):at]
                near = bool(_UPDATE.search(pre[-32:])) or (
                    not keyed and pre.rstrip().lower().endswith("to")
                    and _phrase_key(pre) == ("", True))
                if role != "user":
                    # the assistant states a fact only as "<key> is/= <value>" or "set
                    # <key> to <value>" (its prose is full of labels and narration)
                    near = False
                    keyed = keyed and bool(_STATED.search(pre[-40:]))
                if kind == "code" and not keyed:
                    continue  # a capitalised word is a value only when a phrase names its slot
                if keyed or near:
                    slot_key = self.set_fact(key, value, kind, keyed, body, ordinal, near,
                                             _is_limit(key, body[max(0, at - 40):at]))
            for _, _, kind, v in mine:
                self.add("artifacts", Item(v, list(ords), kind, score=3.0 if role == "user" else 2.0))
            sc = _score(body, len(mine))
            item = Item(s, list(ords), slot_key, score=sc)
            if role != "user" and has("error", a, b):
                self.add("errors", item)
            elif role == "user" and has("rule", a, b):
                self.add("rules", item)
            elif role == "user" and has("pref", a, b):
                self.add("preferences", item)
            elif role == "user" and has("goal", a, b):
                self.add("goal", item)
            elif has("decision", a, b):
                why = _WHY.search(body)
                self.add("decisions", Item(s, list(ords), slot_key,
                                           why.group(1).rstrip(".") if why else "", sc))
            elif has("open", a, b):
                self.add("open_tasks", item)
            elif slots and slot_key:
                continue  # its content is the fact line
            elif role == "assistant" and has("next", a, b):
                self.cp.next_action = [Item(s, list(ords), score=sc)]
            elif body.count(" ") >= 2:
                self.add("notes", Item(compress(s), list(ords), slot_key, score=sc))

    def call(self, call_id: str, name: str, args: str, ordinal: int | None) -> None:
        self.names[call_id] = name
        ords = [ordinal] if ordinal is not None else []
        short = " ".join(args.split())[:160]
        self.open_calls[call_id] = Item(f"{name}({short})", ords)
        for _, _, kind, v in extract_typed(args, prose=False):
            self.add("artifacts", Item(v, list(ords), kind, score=1.0))

    def result(self, call_id: str, text: str, is_error: bool, ordinal: int | None,
               name: str | None = None) -> None:
        name = self.names.get(call_id) or name or "tool"
        self.open_calls.pop(call_id, None)
        err = is_error or bool(_ERROR_LINE.match(text))
        counts = self.cp.tools.setdefault(name, [0, 0])
        counts[1 if err else 0] += 1
        ords = [ordinal] if ordinal is not None else []
        if err:
            first = " ".join(text.split())[:240]
            self.add("errors", Item(f"{name} failed: {first}", ords, score=6.0))
        for _, _, kind, v in extract_typed(text, prose=False):
            self.add("artifacts", Item(v, list(ords), kind))


def update(prev: Checkpoint | None, messages: Sequence[Mapping[str, Any]], fmt: Format,
           ordinals: Sequence[int | None] = ()) -> tuple[Checkpoint, list[Supersession]]:
    """Merge ``messages`` (in order) into ``prev`` (not modified) and return the new
    checkpoint and the slot values the new messages replaced.

    Args:
        prev: the previous checkpoint, or None.
        messages: the caller's message dicts (either wire format).
        fmt: their format.
        ordinals: archive ordinal of each message (same length, or empty: no ordinals).

    Messages carrying a time to live (``compactor_ttl``) are ephemeral and skipped.
    Pure and deterministic; linear in the size of the messages.
    """
    cp = Checkpoint.from_json(prev.to_json()) if prev is not None else Checkpoint()
    up = _Updater(cp)
    old_notes = {id(it) for it in cp.notes}
    for i, m in enumerate(messages):
        o = ordinals[i] if i < len(ordinals) else None
        role = str(m.get("role"))
        if m.get(TTL_KEY) is not None:
            continue  # a message with a time to live is ephemeral: archived, not carried
        for b in blocks(m):
            t = b.get("type")
            if t == "tool_use":
                up.call(str(b.get("id")), str(b.get("name")),
                        json.dumps(b.get("input", {}), ensure_ascii=False), o)
            elif t == "tool_result":
                up.result(str(b.get("tool_use_id")), tool_result_text(b), bool(b.get("is_error")), o)
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            up.call(str(c.get("id")), str(fn.get("name")), str(fn.get("arguments", "")), o)
        if role == "tool":
            text = m.get("content") if isinstance(m.get("content"), str) else \
                "\n".join(str(b.get("text", "")) for b in blocks(m) if b.get("type") == "text")
            up.result(str(m.get("tool_call_id")), str(text or ""), False, o, str(m.get("name") or "tool"))
            continue
        if role not in ("user", "assistant", "system", "developer"):
            continue
        prose = "\n".join(str(b.get("text", "")) for b in blocks(m) if b.get("type") == "text")
        if prose.strip():
            up.prose(prose, "user" if role in ("user", "system", "developer") else "assistant", o)
    for it in up.open_calls.values():
        up.add("pending_calls", it)
    _idf_rescore([it for it in cp.notes if id(it) not in old_notes])
    cp.messages += len(messages)
    for key, n in CAPS.items():
        if key == "facts":
            cp.facts = cp.facts[-n:]
        elif key == "artifacts" and len(cp.artifacts) > n:
            # values (dates, amounts, ids) before other identifiers, then what people
            # wrote, then the newest
            arts = cp.artifacts
            keep = sorted(range(len(arts)), key=lambda i: (
                0 if _is_value(arts[i]) else 1, -arts[i].score, -i))[:n]
            cp.artifacts = [arts[i] for i in sorted(keep)]
        else:
            setattr(cp, key, _cap(getattr(cp, key), n))
    return cp, up.superseded


def _idf_rescore(notes: Sequence[Item]) -> None:
    """Add to each new note's score the mean inverse document frequency of its content
    words over the new notes (rare words carry the facts a reader will ask about). Summed
    in sorted order: a float sum over a set would depend on the hash seed."""
    docs = [_content(it.text) for it in notes]
    df: dict[str, int] = {}
    for d in docs:
        for w in d:
            df[w] = df.get(w, 0) + 1
    n = len(docs) or 1
    for it, d in zip(notes, docs):
        if d:
            it.score += sum(math.log(n / df[w]) for w in sorted(d)) / math.sqrt(len(d))
        # information per token: a short dense note beats a long one of the same score
        it.score /= math.sqrt(len(it.text) / 4 + 3)


def merge(a: Checkpoint, b: Checkpoint) -> Checkpoint:
    """``b`` (later) merged into ``a`` (earlier): b's facts replace a's for matching slots;
    other sections are concatenated without duplicates. For partial summaries of
    consecutive chunks."""
    cp = Checkpoint.from_json(a.to_json())
    up = _Updater(cp)
    for f in b.facts:
        up.set_fact(f.slot, f.value, f.kind, True, f.text, f.ordinal, False)
    for key, _ in SECTIONS:
        if key in ("facts",):
            continue
        for it in getattr(b, key):
            if key == "next_action":
                cp.next_action = [it]
            else:
                up.add(key, it)
    for name, (ok, err) in b.tools.items():
        c = cp.tools.setdefault(name, [0, 0])
        c[0] += ok
        c[1] += err
    cp.messages += b.messages
    return cp


# --------------------------------------------------------------------------- render / parse

def _tag(ords: Sequence[int]) -> str:
    if not ords:
        return ""
    shown = list(ords)[:3] if len(ords) <= 3 else [ords[0], ords[-1]]
    return " [" + ",".join(f"#{o}" for o in shown) + "]"


def _line(key: str, it: Item | Fact) -> str:
    if isinstance(it, Fact):
        return f"- {it.slot}: {it.value}" + _tag([it.ordinal] if it.ordinal is not None else [])
    text = it.text
    if key == "decisions" and it.why and it.why.lower() not in text.lower():
        text += f" (why: {it.why})"
    return f"- {text}" + _tag(it.ordinals)


#: Render passes, in priority order: (section, how many items, which first). The first
#: goal, every rule and the latest facts; then the strong identifiers (ids, paths, dates,
#: amounts...: what a later turn needs verbatim); then the other essentials; then the
#: other identifiers (up to ``_ARTIFACT_SHARE`` of the budget); then one pool of the
#: remaining goal, preference, decision, error, open-task and note items ranked by
#: information per token; then more identifiers if room is left.
_ESSENTIAL = (("goal", 1, "first"), ("rules", 10**6, "newest"), ("facts", 10**6, "newest"),
              ("preferences", 3, "newest"))
_PASSES = (("goal", 1, "newest"), ("next_action", 1, "newest"),
           ("pending_calls", 10**6, "newest"), ("open_tasks", 5, "newest"),
           ("decisions", 3, "newest"), ("errors", 3, "newest"))
#: identifier kinds a later turn needs verbatim (must-keep items people check first), and
#: among them the values (rendered first)
STRONG_KINDS = frozenset({"url", "email", "path", "date", "amount", "version", "ident", "id",
                          "code"})
VALUE_KINDS = frozenset({"date", "amount", "id", "email", "url", "version"})
#: Among values: dates, amounts and ids first, versions last (tool output lists many).
_KIND_RANK = {"date": 0, "amount": 0, "id": 0, "email": 1, "url": 1, "version": 2}


def _is_value(it: Item) -> bool:
    """An artifact that is a value: of a value kind, or an identifier with a digit
    (``spike/hyopr-35``, ``rf_smoke_0417``, ``HMAC-SHA256``)."""
    return it.slot in VALUE_KINDS or (it.slot == "ident" and any(ch.isdigit() for ch in it.text))
_POOL = ("goal", "preferences", "decisions", "errors", "open_tasks", "notes")
_ARTIFACT_SHARE = 0.25


def render(cp: Checkpoint, budget_tokens: int, counter: TokenCounter, *, context: str = "",
           novelty: float = 0.3) -> str:
    """The checkpoint as text of at most ``budget_tokens`` tokens (by ``counter``).

    ``context``: text that stays in the context anyway (the kept messages); identifiers
    found there are not repeated. ``novelty``: a note is skipped when less than this share
    of its content words is new (near-duplicates); 0 keeps every note.

    Sections in the fixed order of :data:`SECTIONS` (empty ones omitted), then a ``Tool
    calls:`` line; items in their original order, each ending with its ordinals
    (``[#12]``; the identifiers line and the notes carry one range, ``[#3-#40]``, on the
    line or title). Items are chosen by priority until the budget is spent: the first goal,
    every rule, the latest facts, preferences, the next action, pending calls and open
    tasks, recent decisions and errors, then identifiers, then notes by score.
    """
    header = _HEADER.format(v=cp.version, n=cp.messages)
    used = counter.count(header) + 1
    chosen: dict[str, set[int]] = {k: set() for k, _ in SECTIONS}
    titled: set[str] = set()
    tools = _tools_line(cp.tools)

    def cost(key: str, line: str) -> int:
        c = counter.count(line) + 1
        if key not in titled:
            c += counter.count(dict(SECTIONS)[key] + ":") + 1 + (8 if key in ("artifacts", "notes") else 0)
        return c

    def take(key: str, i: int, line: str) -> bool:
        nonlocal used
        c = cost(key, line)
        if used + c > budget_tokens:
            return False
        used += c
        chosen[key].add(i)
        titled.add(key)
        return True

    in_context: set[int] = set()
    if context and cp.artifacts:
        absent = set(missing([it.text for it in cp.artifacts], context))
        in_context = {i for i, it in enumerate(cp.artifacts) if it.text not in absent}
    covered: set[str] = set()
    tools_cost = counter.count(tools) + 1 if tools else 0
    room_tools = tools is not None and used + tools_cost <= budget_tokens * 0.15
    if room_tools:
        used += tools_cost
    def try_item(key: str, i: int) -> bool:
        items = cp.facts if key == "facts" else getattr(cp, key)
        if i in chosen[key]:
            return True
        words: set[str] = set()
        if key == "notes":
            words = _content(items[i].text)
            if words and len(words - covered) < novelty * len(words):
                return False
        if not take(key, i, "- " + items[i].text if key == "notes" else _line(key, items[i])):
            return False
        covered.update(words if key == "notes" else _content(
            items[i].value if isinstance(items[i], Fact) else items[i].text))
        return True

    def passes(spec: Sequence[tuple[str, int, str]]) -> None:
        for key, n, first in spec:
            items = cp.facts if key == "facts" else getattr(cp, key)
            order = list(range(len(items))) if first == "first" else list(range(len(items) - 1, -1, -1))
            taken = 0
            for i in order:
                if taken >= n:
                    break
                if try_item(key, i):
                    taken += 1

    def artifacts(limit: float, strong: bool | None) -> None:
        items = cp.artifacts
        if not items:
            return
        # identifiers already written in a chosen line are not repeated
        said = "\n".join(_line(k, (cp.facts if k == "facts" else getattr(cp, k))[i])
                         for k, idx in chosen.items() if k != "artifacts" for i in sorted(idx))
        absent = set(missing([it.text for it in items], said))
        # what people wrote first (score: user 3, assistant 2, tool input 1, tool output 0),
        # then the newest
        for i in sorted(range(len(items)), key=lambda i: (_KIND_RANK.get(items[i].slot, 1),
                                                          -items[i].score, -i)):
            if used >= limit:
                break
            if i in chosen["artifacts"] or i in in_context or items[i].text not in absent:
                continue
            if strong is not None and (_is_value(items[i]) if kinds is VALUE_KINDS
                                       else items[i].slot in kinds) != strong:
                continue
            take("artifacts", i, "; " + items[i].text)

    passes(_ESSENTIAL)
    for kinds in (VALUE_KINDS, STRONG_KINDS):
        artifacts(budget_tokens, True)
    kinds = STRONG_KINDS
    passes(_PASSES)
    artifacts(used + _ARTIFACT_SHARE * budget_tokens, False)
    _greedy_pool(cp, chosen, covered, lambda: budget_tokens - 4 - used, try_item, counter)
    artifacts(budget_tokens, None)
    lines = [header]
    for key, title in SECTIONS:
        idx = sorted(chosen[key])
        if not idx:
            continue
        items = cp.facts if key == "facts" else getattr(cp, key)
        if key == "artifacts":
            ords = sorted({o for i in idx for o in items[i].ordinals})
            rng = f" [#{ords[0]}-#{ords[-1]}]" if len(ords) > 1 else _tag(ords)
            lines.append(f"{title}: " + "; ".join(items[i].text for i in idx) + rng)
            continue
        if key == "notes":
            # notes are many and routine: one ordinal range on the title, not one a line
            ords = sorted({o for i in idx for o in items[i].ordinals})
            rng = f" [#{ords[0]}-#{ords[-1]}]" if len(ords) > 1 else _tag(ords)
            lines.append(f"{title}:{rng}")
            lines.extend("- " + items[i].text for i in idx)
            continue
        lines.append(f"{title}:")
        lines.extend(_line(key, items[i]) for i in idx)
    if room_tools and tools:
        lines.append(tools)
    text = "\n".join(lines)
    while counter.count(text) > budget_tokens and len(lines) > 1:
        lines.pop()
        text = "\n".join(lines)
    return text


def _greedy_pool(cp: Checkpoint, chosen: Mapping[str, set[int]], covered: set[str],
                 room: Callable[[], float], try_item: Callable[[str, int], bool],
                 counter: TokenCounter) -> None:
    """Fill the rest of the budget from the pool sections (:data:`_POOL`) by budgeted
    maximum coverage: repeatedly take the item whose content words not yet covered carry
    the most inverse document frequency per token of its line (the greedy of Khuller,
    Moss and Naor 1999, as used for extractive summaries by Lin and Bilmes 2011), with
    lazy re-evaluation (a gain only falls as coverage grows). Rare words carry what a
    reader asks about; a near-duplicate gains nothing. The gain is weighted by the line's
    :func:`specificity` (names, numbers, quoted titles, time anchors; questions half):
    within one conversation a rare word can be chit-chat ("You've got guts"), a name or a
    date rarely is. Deterministic."""
    cands: list[tuple[str, int, frozenset[str], int, float]] = []
    for key in _POOL:
        for i, it in enumerate(getattr(cp, key)):
            if i not in chosen[key]:
                line = "- " + it.text if key == "notes" else _line(key, it)
                cands.append((key, i, frozenset(_content(it.text)), counter.count(line) + 1,
                              specificity(it.text)))
    if not cands:
        return
    df: dict[str, int] = {}
    for _, _, words, _, _ in cands:
        for w in words:
            df[w] = df.get(w, 0) + 1
    n = len(cands)
    idf = {w: math.log((n + 1) / (c + 0.5)) for w, c in df.items()}

    def gain(c: tuple[str, int, frozenset[str], int, float]) -> float:
        new = sorted(c[2] - covered)   # sorted: a float sum over a set depends on the hash seed
        if c[2] and not new:
            return 0.0
        return sum(idf[w] for w in new) * c[4] / c[3]

    heap = [(-gain(c), k) for k, c in enumerate(cands)]
    heapq.heapify(heap)
    while heap and room() > 0:
        g, k = heapq.heappop(heap)
        c = cands[k]
        now = gain(c)
        if heap and now < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-now, k))   # stale: its words were covered since
            continue
        if now <= 0.0:
            break
        if c[3] <= room():
            try_item(c[0], c[1])


def _tools_line(tools: Mapping[str, Sequence[int]]) -> str | None:
    if not tools:
        return None
    return _TOOLS + " " + "; ".join(f"{n} x{ok + err}" + (f" ({err} failed)" if err else "")
                                    for n, (ok, err) in tools.items())


def _split_tag(line: str) -> tuple[str, list[int]]:
    m = _ORD_TAG.search(line)
    if not m:
        return line.strip(), []
    return line[:m.start()].strip(), _ords(re.split(r",\s*|-", m.group(1)))


def parse(text: str) -> Checkpoint:
    """Read a rendered checkpoint back (also an older summary of ours, or any text: lines
    outside known sections become notes). Never raises on text."""
    text = text.replace(SUMMARY_OPEN, "").replace(SUMMARY_CLOSE, "")
    cp = Checkpoint()
    up = _Updater(cp)     # its indexed add: parsing stays linear in the number of items
    section = "notes"
    section_ords: list[int] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _HEADER_RE.match(line)
        if m:
            cp.messages = int(m.group(2))
            continue
        m = re.match(r"^Earlier conversation \((\d+) messages\)", line)
        if m:
            cp.messages = int(m.group(1))
            continue
        if line.startswith(_TOOLS):
            for part in line[len(_TOOLS):].split(";"):
                t = re.match(r"\s*(.+?) x(\d+)(?: \((\d+) failed\))?\s*$", part)
                if t:
                    err = int(t.group(3) or 0)
                    cp.tools[t.group(1)] = [int(t.group(2)) - err, err]
            continue
        head, sep, rest = line.partition(":")
        title = head.strip().lower()
        if sep and (title in _TITLE_TO_KEY or line.startswith(_KEY_FACTS)):
            key = "artifacts" if line.startswith(_KEY_FACTS) else _TITLE_TO_KEY[title]
            section_ords = _split_tag(rest)[1] if key == "notes" else []
            if key == "artifacts" and rest.strip():
                for part in rest.split(";"):
                    t, o = _split_tag(part)
                    if t:
                        # chosen before, so ranked as what people wrote
                        up.add("artifacts", Item(t, o, _kind_of(t), score=3.0))
            section = key
            continue
        legacy = {"goals and constraints": "rules", "decisions and progress": "decisions",
                  "errors": "errors", "notes": "notes"}
        if line.endswith(":") and line[:-1].strip().lower() in legacy:
            section = legacy[line[:-1].strip().lower()]
            continue
        body, ords = _split_tag(line[2:] if line.startswith("- ") else line)
        if not body:
            continue
        if section == "notes" and not ords:
            ords = list(section_ords)
        if section == "facts":
            slot, _, value = body.partition(": ")
            if value:
                cp.facts.append(Fact(slot.strip(), value.strip(), _kind_of(value), "",
                                     ords[0] if ords else None, _is_limit(slot, "")))
                continue
        elif section == "next_action":
            cp.next_action = [Item(body, ords)]
            continue
        why = ""
        if section == "decisions":
            w = re.search(r"\s*\(why: (.*)\)$", body)
            if w:
                body, why = body[:w.start()], w.group(1)
        slot = ""
        if section in ("rules", "preferences", "decisions", "goal"):
            keyed = [k for k, _, _, ok, _ in detect_slots(body) if ok]
            slot = keyed[0] if keyed else ""
        up.add("notes" if section == "facts" else section,
               Item(body, ords, slot, why=why, score=_score(body, 0) + 1.0))
    return cp


@functools.lru_cache(maxsize=1 << 16)
def _kind_of(value: str) -> str:
    """The identifier kind of a value (``extract_typed``'s, when the whole value is one
    item), else "word". Cached: a session's summaries carry the same identifiers each
    compaction, and each one's parse reads them again."""
    typed = extract_typed(value)
    return typed[0][2] if typed and typed[0][3] == value.strip() else "word"


# --------------------------------------------------------------------------- LLM side

def checkpoint_json_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) a model-written checkpoint must follow; the same
    fields as :meth:`Checkpoint.to_json` (``score`` optional)."""
    item = {"type": "object", "required": ["text"], "additionalProperties": False,
            "properties": {"text": {"type": "string", "minLength": 1},
                           "ordinals": {"type": "array", "items": {"type": "integer"}},
                           "slot": {"type": "string"}, "why": {"type": "string"},
                           "score": {"type": "number"}}}
    fact = {"type": "object", "required": ["slot", "value"], "additionalProperties": False,
            "properties": {"slot": {"type": "string", "minLength": 1},
                           "value": {"type": "string", "minLength": 1},
                           "kind": {"type": "string"}, "text": {"type": "string"},
                           "ordinal": {"type": ["integer", "null"]}, "limit": {"type": "boolean"}}}
    props: dict[str, Any] = {"version": {"const": CHECKPOINT_VERSION},
                             "messages": {"type": "integer", "minimum": 0},
                             "tools": {"type": "object", "additionalProperties": {
                                 "type": "array", "items": {"type": "integer"},
                                 "minItems": 2, "maxItems": 2}}}
    for key, _ in SECTIONS:
        props[key] = {"type": "array", "items": fact if key == "facts" else item}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Checkpoint",
            "type": "object", "required": ["version"], "additionalProperties": False,
            "properties": props}


_PROMPT = """You maintain the checkpoint of an AI agent's session: the state the agent needs \
to continue without the original messages. Update the previous checkpoint with the new \
messages and answer with the new checkpoint as one JSON object following this schema:

{schema}

Rules:
- "rules": every constraint the user set (must / never / always / only ...), copied whole; \
a rule written as several sentences is one item.
- "facts": one entry per slot ("budget", "region", "units"...) with its LATEST value; when a \
message changes a value, replace the old value (do not keep both).
- "goal", "preferences", "decisions" (with "why"), "open_tasks", "pending_calls", "errors", \
"next_action" (at most one item), "artifacts" (every id, path, URL, e-mail, amount, date, \
version and code, copied exactly), "notes" (other facts a reader may ask about).
- "ordinals": the [#N] numbers of the messages an item comes from.
- Keep the rendered checkpoint within about {budget} tokens: drop routine notes first.
- Do not invent anything that is not in the messages. Output only the JSON object.

<previous_checkpoint>
{previous}
</previous_checkpoint>

<messages>
{transcript}
</messages>"""


def _schema_shape(schema: Mapping[str, Any]) -> Any:
    """A JSON Schema as the compact shape of its instances (``{"key": "string", ...}``,
    ``[item]``): what a model needs to write one, at about a quarter of the tokens."""
    t = schema.get("type")
    if t == "object" or "properties" in schema:
        return {k: _schema_shape(v) for k, v in schema.get("properties", {}).items()}
    if t == "array":
        return [_schema_shape(schema.get("items", {}))]
    if isinstance(t, list):
        return "|".join(t)
    return t or "any"


def checkpoint_prompt(previous: Checkpoint | None, transcript: str, budget_tokens: int) -> str:
    """The instructions for a model-backed summarizer: update ``previous`` with the
    messages in ``transcript`` (lines should carry ``[#N]`` ordinals) and answer with
    JSON following :func:`checkpoint_json_schema` (shown in its compact shape: ~290 tokens
    instead of ~1,200 for the full schema, so the prompt leaves room for the span)."""
    prev = json.dumps(previous.to_json() if previous else {}, ensure_ascii=False)
    shape = json.dumps(_schema_shape(checkpoint_json_schema()), separators=(",", ":"))
    return _PROMPT.format(schema=shape, previous=prev, transcript=transcript,
                          budget=budget_tokens)


def validate_llm_checkpoint(text: str) -> Checkpoint:
    """A model's answer read as a checkpoint.

    Repairs: a ```json fence or prose around the object, a missing ``version``, a single
    item where a list is expected, plain strings for items, ``"slot: value"`` strings for
    facts, unknown top-level keys (dropped), trailing commas.

    Raises:
        SummarizerError: no JSON object in ``text``, or a field that cannot be repaired
            (the compactor then falls back; the text never becomes content).
    """
    if not isinstance(text, str) or "{" not in text:
        raise SummarizerError("model checkpoint: no JSON object in the answer")
    body = text[text.index("{"):text.rindex("}") + 1] if "}" in text else ""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        try:
            data = json.loads(re.sub(r",\s*([}\]])", r"\1", body))
        except json.JSONDecodeError as e:
            raise SummarizerError(f"model checkpoint: invalid JSON ({e.msg} at char {e.pos})") from e
    if not isinstance(data, dict):
        raise SummarizerError("model checkpoint: the answer is not a JSON object")
    known = {k for k, _ in SECTIONS} | {"version", "messages", "tools"}
    data = {k: v for k, v in data.items() if k in known}
    data.setdefault("version", CHECKPOINT_VERSION)
    if not isinstance(data.get("tools", {}), Mapping):
        data["tools"] = {}
    cp = Checkpoint.from_json(data)
    if not any(getattr(cp, k) for k, _ in SECTIONS):
        raise SummarizerError("model checkpoint: every section is empty")
    return cp
