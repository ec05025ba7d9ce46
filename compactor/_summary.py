"""Summaries: the one-method ``Summarizer`` protocol, the offline extractive summarizer,
and the must-keep check that runs after any summarizer.

The extractive summarizer is deterministic, needs no network and honours its token
budget. It selects, from the span being evicted (and the previous summary, so summaries
roll up into one), the sentences that carry the user's goals and constraints, decisions,
errors and facts, scores them by information density, and renders them in sections in
their original order, with the tool calls and their outcomes and a "Key facts" line.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from ._facts import extract_facts, missing
from ._format import SUMMARY_CLOSE, SUMMARY_OPEN, Format, blocks, text_of, tool_result_text
from ._tokens import TokenCounter


@dataclass(frozen=True)
class SummaryRequest:
    """What a summarizer is asked to summarize.

    Attributes:
        messages: the evicted span, the caller's own message dicts, in order (the previous
            summary message excluded: its text is ``previous_summary``).
        fmt: their wire format.
        previous_summary: the text of the summary being rolled up, or None.
        max_tokens: the budget of the summary text, in tokens.
        counter: the token counter the budget is measured with.
        partials: when not empty, merge these partial summaries (of consecutive chunks of
            a span too large for one call) instead of reading ``messages``.
        session_id: for logging.
        context: the text that stays in the context (kept messages); facts already in it
            need not be repeated in the summary.
        usage: a list a summarizer that calls a model appends its usage to, one dict per
            call: ``{"model": str, "input_tokens": int, "output_tokens": int}``; the
            compactor prices it (``cost_usd`` of the compaction record).
    """

    messages: Sequence[Mapping[str, Any]]
    fmt: Format
    previous_summary: str | None
    max_tokens: int
    counter: TokenCounter
    partials: tuple[str, ...] = ()
    session_id: str | None = None
    context: str = ""
    usage: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class Summarizer(Protocol):
    """Turns an evicted span into summary text. One async method.

    ``summarize(request) -> str`` returns plain text (no ``<conversation_summary>`` tags;
    the compactor adds them). Raise :class:`~compactor.SummarizerError` on failure: the
    compactor then falls back; a failure never becomes content.

    An optional attribute ``input_window`` (tokens) tells the compactor the largest span
    one call can take; larger spans are split on unit boundaries, summarized concurrently
    and merged with a ``partials`` request.
    """

    async def summarize(self, request: SummaryRequest) -> str: ...


# --------------------------------------------------------------------------- extraction

_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_GOAL = re.compile(r"\b(?:i want|i need|i'd like|i would like|please|must|need to|have to|should|"
                   r"don't|do not|never|always|make sure|deadline|by (?:monday|tuesday|wednesday|"
                   r"thursday|friday|saturday|sunday|tomorrow)|goal|require|only|cannot|can't)\b", re.I)
_DECISION = re.compile(r"\b(?:decid\w*|i will|i'll|we will|we'll|going to|plan\w*|chose|choose|"
                       r"confirm\w*|agreed|fixed|done|completed|created|updated|changed|cancel\w*|"
                       r"booked|refund\w*|merged|committed|resolved|switch\w*|use )\b", re.I)
_ERROR = re.compile(r"\b(?:error|exception|traceback|failed|failure|fatal|denied|not found|"
                    r"invalid|timeout|timed out|refused|cannot|unable)\b", re.I)
_SPEAKER = re.compile(r"^([A-Z][\w .'-]{0,30}):\s+")
_HEADER = re.compile(r"^\[Session [^\]]*\]\s*")
_CAPWORD = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_NUM = re.compile(r"\b\d[\d,.:/-]*\b")
_STOP = frozenset("""a an the and or but so of to in on at for with from by is are was were be been
being it its this that these those i you he she we they me him her us them my your his our their
just really very too also oh wow yeah yes no okay ok hey hi hello thanks thank lol haha""".split())

#: Words dropped when a sentence is compressed: articles, forms of "be", interjections and
#: intensifiers. Negations and prepositions are never dropped (they carry meaning).
_FILLER = frozenset("""a an the so really very just oh wow yeah yep um uh hey hi hello totally
actually basically literally definitely quite pretty super also too well lol haha omg is are
was were am be been being that's it's i'm""".split())

_SECTIONS = ("Goals and constraints", "Decisions and progress", "Errors", "Notes")
_FACTS_HEADER = "Key facts:"
_TOOLS_HEADER = "Tool calls:"


@dataclass
class _Candidate:
    order: tuple[int, int]
    section: str
    text: str
    score: float
    tokens: int = 0
    words: frozenset[str] | None = None


@dataclass
class _Extract:
    candidates: list[_Candidate] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    tools: "OrderedDict[str, list[int]]" = field(default_factory=OrderedDict)  # name -> [ok, err]
    messages: int = 0


_BULLET = re.compile(r"^(?:[-*\u2022>#]+|\d+[.)])\s+")
_COUNT = re.compile(r"^Earlier conversation \((\d+) messages\)")


def _summarized_count(summary: str) -> int:
    """How many messages an earlier summary of ours covered (from its first line)."""
    m = _COUNT.match(summary.strip())
    return int(m.group(1)) if m else 0


def _sentences(text: str) -> list[str]:
    out = []
    for s in _SENT_SPLIT.split(text):
        s = _BULLET.sub("", " ".join(s.split()))
        if s:
            out.append(s)
    return out


def _score(sentence: str, role: str) -> tuple[float, str]:
    """Information score of a sentence and the section it belongs to."""
    body = _SPEAKER.sub("", _HEADER.sub("", sentence))
    words = re.findall(r"[A-Za-z0-9'$%]+", body)
    if len(words) < 3:
        return 0.0, "Notes"
    content = [w for w in words if w.lower() not in _STOP]
    facts = extract_facts(body)
    score = (len(content) / len(words)) * 1.0 + 1.5 * len(facts) \
        + 0.6 * len(_CAPWORD.findall(body)) + 0.5 * len(_NUM.findall(body))
    section = "Notes"
    if _ERROR.search(body):
        section, score = "Errors", score + 2.0
    elif role == "user" and _GOAL.search(body):
        section, score = "Goals and constraints", score + 1.0
    elif role == "assistant" and _DECISION.search(body):
        section, score = "Decisions and progress", score + 1.0
    if sentence.endswith("?") and not facts:
        score *= 0.6
    return score, section


def compress(sentence: str) -> str:
    """Drop filler words (see ``_FILLER``) from a sentence, keeping every other word, its
    order and its punctuation: "Caroline: I was so happy!" -> "Caroline: I happy!"."""
    out = []
    for w in sentence.split(" "):
        core = w.strip(".,!?;:\"()").lower()
        if core in _FILLER and not any(ch.isdigit() for ch in w):
            tail = w[len(w.rstrip(".,!?;:")):]
            if tail and out:
                out[-1] += tail
            continue
        out.append(w)
    return " ".join(out)


def _content_words(text: str) -> set[str]:
    return set(w.lower() for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]+", text)) - _STOP - _FILLER


def _idf_rescore(cands: list[_Candidate]) -> None:
    """Add to each sentence's score the mean inverse document frequency of its content
    words over the span (rare words carry the facts a reader will ask about)."""
    docs = [_content_words(c.text) for c in cands]
    df: Counter[str] = Counter()
    for d in docs:
        df.update(d)
    n = len(docs) or 1
    for c, d in zip(cands, docs):
        if d:
            # summed in sorted order: a float sum over a set would depend on the set's
            # (hash-seeded) iteration order, and so would the ranking of near-ties
            c.score += sum(math.log(n / df[w]) for w in sorted(d)) / math.sqrt(len(d))


def _extract(req: SummaryRequest) -> _Extract:
    ex = _Extract(messages=len(req.messages) + sum(_summarized_count(t) for t in
                                                    (req.previous_summary or "", *req.partials)))
    facts: list[str] = []
    if req.previous_summary:
        prev_c, prev_f, prev_tools = _parse_summary(req.previous_summary)
        ex.candidates.extend(prev_c)
        facts.extend(prev_f)
        for name, (ok, err) in prev_tools.items():
            ex.tools.setdefault(name, [0, 0])
            ex.tools[name][0] += ok
            ex.tools[name][1] += err
    sources = list(req.partials) if req.partials else []
    for p_i, p in enumerate(sources):
        c, f, t = _parse_summary(p)
        for cand in c:
            cand.order = (p_i, cand.order[1])
        ex.candidates.extend(c)
        facts.extend(f)
        for name, (ok, err) in t.items():
            ex.tools.setdefault(name, [0, 0])
            ex.tools[name][0] += ok
            ex.tools[name][1] += err
    names: dict[str, str] = {}
    base = len(sources) + 1
    for i, m in enumerate(req.messages):
        role = str(m.get("role"))
        for b in blocks(m):
            t = b.get("type")
            if t == "tool_use":
                names[str(b.get("id"))] = str(b.get("name"))
                facts.extend(extract_facts(json.dumps(b.get("input", {}), ensure_ascii=False)))
            elif t == "tool_result":
                _tool_outcome(ex, names.get(str(b.get("tool_use_id")), "tool"),
                              tool_result_text(b), bool(b.get("is_error")), (base + i, 0))
                facts.extend(extract_facts(tool_result_text(b), prose=False))
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            names[str(c.get("id"))] = str(fn.get("name"))
            facts.extend(extract_facts(str(fn.get("arguments", ""))))
        if role == "tool":
            text = m.get("content") if isinstance(m.get("content"), str) else text_of(m)
            _tool_outcome(ex, names.get(str(m.get("tool_call_id")), str(m.get("name") or "tool")),
                          str(text or ""), False, (base + i, 0))
            facts.extend(extract_facts(str(text or ""), prose=False))
            continue
        prose = "\n".join(str(b.get("text", "")) for b in blocks(m) if b.get("type") == "text")
        facts.extend(extract_facts(prose))
        for j, s in enumerate(_sentences(prose)):
            sc, section = _score(s, role)
            if sc > 0:
                ex.candidates.append(_Candidate((base + i, j), section, compress(s), sc))
    _idf_rescore(ex.candidates)
    ex.facts = list(dict.fromkeys(facts))
    return ex


def _tool_outcome(ex: _Extract, name: str, text: str, is_error: bool, order: tuple[int, int]) -> None:
    err = is_error or bool(re.match(r"\s*(?:error|exception|traceback)", text, re.I))
    ex.tools.setdefault(name, [0, 0])
    ex.tools[name][1 if err else 0] += 1
    if err:
        first = " ".join(text.split())[:240]
        ex.candidates.append(_Candidate(order, "Errors", f"{name} failed: {first}", 6.0))


def _parse_summary(text: str) -> tuple[list[_Candidate], list[str], dict[str, list[int]]]:
    """Read back a summary this module wrote (for rolling up); unknown text becomes notes."""
    text = text.replace(SUMMARY_OPEN, "").replace(SUMMARY_CLOSE, "")
    cands: list[_Candidate] = []
    facts: list[str] = []
    tools: dict[str, list[int]] = {}
    section = "Notes"
    for n, line in enumerate(text.splitlines()):
        line = line.strip()
        if not line:
            continue
        head = line.rstrip(":")
        if head in _SECTIONS:
            section = head
        elif line.startswith(_FACTS_HEADER):
            facts.extend(x.strip() for x in line[len(_FACTS_HEADER):].split(";") if x.strip())
        elif line.startswith(_TOOLS_HEADER):
            for part in line[len(_TOOLS_HEADER):].split(";"):
                m = re.match(r"\s*(.+?) x(\d+)(?: \((\d+) failed\))?\s*$", part)
                if m:
                    tools[m.group(1)] = [int(m.group(2)) - int(m.group(3) or 0), int(m.group(3) or 0)]
        elif line.startswith("- "):
            # earlier content keeps a bonus: it was already selected once
            sc, _ = _score(line[2:], "user" if section == "Goals and constraints" else "assistant")
            cands.append(_Candidate((0, n), section, line[2:], sc + 1.0))
        elif not line.startswith("Earlier conversation"):
            cands.append(_Candidate((0, n), "Notes", line, 1.0))
    return cands, facts, tools


# --------------------------------------------------------------------------- rendering

def _render(ex: _Extract, chosen: Sequence[_Candidate], facts: Sequence[str],
            tools_line: str | None) -> str:
    lines = [f"Earlier conversation ({ex.messages} messages) summarized:"]
    for sec in _SECTIONS:
        items = sorted((c for c in chosen if c.section == sec), key=lambda c: c.order)
        if items:
            lines.append(f"{sec}:")
            lines.extend(f"- {c.text}" for c in items)
    if tools_line:
        lines.append(tools_line)
    if facts:
        lines.append(_FACTS_HEADER + " " + "; ".join(facts))
    return "\n".join(lines)


def _tools_line(tools: Mapping[str, Sequence[int]]) -> str | None:
    if not tools:
        return None
    parts = []
    for name, (ok, err) in tools.items():
        parts.append(f"{name} x{ok + err}" + (f" ({err} failed)" if err else ""))
    return _TOOLS_HEADER + " " + "; ".join(parts)


def fit_facts(facts: Sequence[str], budget: int, counter: TokenCounter) -> list[str]:
    """The longest prefix of ``facts`` whose "Key facts" line fits ``budget`` tokens."""
    out: list[str] = []
    used = counter.count(_FACTS_HEADER)
    for f in facts:
        c = counter.count("; " + f)
        if used + c > budget:
            break
        out.append(f)
        used += c
    return out


class ExtractiveSummarizer:
    """The offline summarizer: deterministic, no network, within ``max_tokens``.

    Budget split: the "Key facts" line (identifier-like items, see ``compactor._facts``)
    may take up to ``facts_share`` of the budget; the tool-call line follows; the rest
    goes to the highest-scoring sentences (score = content-word density + facts + named
    entities + numbers, with bonuses for goals, errors and decisions), shown in their
    original order under section headings.
    """

    name = "extractive"
    input_window: int | None = None

    def __init__(self, facts_share: float = 0.25, novelty: float = 0.5) -> None:
        self.facts_share = facts_share
        self.novelty = novelty

    async def summarize(self, request: SummaryRequest) -> str:
        return self.summarize_sync(request)

    def summarize_sync(self, request: SummaryRequest) -> str:
        """The same as :meth:`summarize`, without awaiting (it does no I/O)."""
        counter, budget = request.counter, request.max_tokens
        raw = _transcript(request)
        raw_tokens = counter.count(raw)
        ex = _extract(request)
        header = counter.count(f"Earlier conversation ({ex.messages} messages) summarized:") + 2
        tools_line = _tools_line(ex.tools)
        tools_cost = counter.count(tools_line) + 1 if tools_line else 0
        if header + tools_cost > budget * 0.25:
            tools_line, tools_cost = None, 0
        facts = missing(ex.facts, request.context) if request.context else list(ex.facts)
        for c in ex.candidates:
            c.tokens = counter.count(c.text) + 3
            c.words = frozenset(_content_words(c.text))
        ranked = sorted(ex.candidates, key=lambda c: (-c.score / math.sqrt(c.tokens), c.order))

        def pick(room: float, chosen: list[_Candidate], covered: set[str], used: int) -> int:
            taken = {id(c) for c in chosen}
            for c in ranked:
                if id(c) in taken or used + c.tokens + 2 > room:
                    continue
                words = c.words or frozenset()
                # skip near-duplicates: most of their content words are already shown
                if words and len(words - covered) < self.novelty * len(words):
                    continue
                chosen.append(c)
                covered |= words
                used += c.tokens + 2
            return used

        def build(room: float) -> tuple[str, int]:
            chosen: list[_Candidate] = []
            covered: set[str] = set()
            used = pick(room, chosen, covered, 0)
            body = _render(ex, chosen, [], tools_line)
            need = missing(facts, body)
            fitted = fit_facts(need, budget - counter.count(body) - 1, counter)
            text = _render(ex, chosen, fitted, tools_line)
            # what the facts left over goes to more sentences
            spare = budget - counter.count(text)
            if spare > 8:
                pick(used + spare - 4, chosen, covered, used)
                text = _render(ex, chosen, fitted, tools_line)
            while counter.count(text) > budget and chosen:
                chosen.pop()
                text = _render(ex, chosen, fitted, tools_line)
            return text, len(need) - len(fitted)

        base = budget - header - tools_cost
        text, lost = build(base * (1 - self.facts_share))
        for share in (0.3, 0.15, 0.0):
            if not lost or share >= 1 - self.facts_share:
                continue
            text, lost = build(base * share)
        # a small span is best kept as it was, when that is shorter than its summary
        if raw_tokens <= budget and raw_tokens <= counter.count(text):
            return raw
        return text


def _transcript(req: SummaryRequest) -> str:
    """The span as plain lines ``role: text`` (the previous summary first)."""
    lines = []
    if req.previous_summary:
        lines.append(req.previous_summary.strip())
    lines.extend(req.partials)
    for m in req.messages:
        t = " ".join(text_of(m).split())
        if t:
            lines.append(f"{m.get('role')}: {t}")
    return "\n".join(lines)


def must_keep_items(messages: Sequence[Mapping[str, Any]], previous_summary: str | None) -> list[str]:
    """The must-keep items of an evicted span: identifier-like items of its prose, tool
    inputs and tool outputs (see ``compactor._facts``), plus those the previous summary
    carried. Deduplicated, in order."""
    items: list[str] = []
    if previous_summary:
        items.extend(_parse_summary(previous_summary)[1])
        items.extend(extract_facts(previous_summary, prose=False))
    for m in messages:
        for b in blocks(m):
            t = b.get("type")
            if t == "text":
                items.extend(extract_facts(str(b.get("text", ""))))
            elif t == "tool_use":
                items.extend(extract_facts(json.dumps(b.get("input", {}), ensure_ascii=False)))
            elif t == "tool_result":
                items.extend(extract_facts(tool_result_text(b), prose=False))
        for c in m.get("tool_calls") or []:
            items.extend(extract_facts(str((c.get("function") or {}).get("arguments", ""))))
        if m.get("role") == "tool" and isinstance(m.get("content"), str):
            items.extend(extract_facts(m["content"], prose=False))
    return list(dict.fromkeys(items))


def add_missing_facts(summary: str, items: Sequence[str], kept_text: str, budget: int,
                      counter: TokenCounter) -> tuple[str, int]:
    """The must-keep check: append to ``summary`` a "Key facts" line with the items found
    neither in it nor in the kept messages (``kept_text``), as many as fit ``budget``
    tokens in total. Returns the new summary and how many items are now present."""
    absent = missing(items, summary + "\n" + kept_text)
    if absent:
        spare = budget - counter.count(summary) - 1
        add = fit_facts(absent, spare, counter)
        if add:
            summary = summary.rstrip() + "\n" + _FACTS_HEADER + " " + "; ".join(add)
    present = len(items) - len(missing(items, summary + "\n" + kept_text))
    return summary, present


def tool_counts(messages: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """How many calls of each tool a span holds (for reports)."""
    c: Counter[str] = Counter()
    for m in messages:
        for b in blocks(m):
            if b.get("type") == "tool_use":
                c[str(b.get("name"))] += 1
        for call in m.get("tool_calls") or []:
            c[str((call.get("function") or {}).get("name"))] += 1
    return c
