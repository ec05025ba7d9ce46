"""Pure decisions about one session: its metadata, its importance, its tier and its form.

No I/O here: these functions take the session's messages (and ages in days) and return
values, so the tier rules can be read and tested in isolation.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from compactor._errors import InvalidHistoryError
from compactor._format import Format, blocks, detect_format, text_of, tool_result_text
from compactor._summary import ExtractiveSummarizer, SummaryRequest, tool_counts
from compactor._tokens import TokenCounter, message_tokens
from compactor.maintenance._config import ImportanceConfig, TierConfig


class Tier(str, enum.Enum):
    """What the archive keeps readable for a session (the lossless archive is always
    kept, whatever the tier, until a retention rule deletes the session)."""

    FULL = "full"
    KEY_POINTS = "key_points"
    BRIEF = "brief_summary"
    METADATA = "metadata_only"

    @property
    def rank(self) -> int:
        """0 for the fullest form, 3 for metadata only."""
        return list(Tier).index(self)


_ERROR_TEXT = re.compile(r"\s*(?:error|exception|traceback)", re.I)
_SPEAKER = re.compile(r"^([A-Z][\w.'-]{0,30}(?: [A-Z][\w.'-]{0,30})?):\s")


@dataclass(frozen=True)
class Profile:
    """Facts about a session's messages, the metadata-only tier's content.

    Attributes:
        format: ``"anthropic"`` or ``"openai"``.
        messages: number of messages.
        tokens: estimated tokens of all messages (``message_tokens``, framing included).
        turns: back-and-forth turns: user messages with text of their own (not only tool
            results) answered by an assistant message.
        tool_calls: number of tool calls.
        tools: calls per tool name.
        errors: tool results flagged ``is_error`` or starting with error/exception/traceback.
        participants: roles in order of appearance, then ``speaker:<Name>`` for names that
            open 2+ messages as "Name: text" (transcribed dialogue).
        outcome: ``{"last_role", "final_text" (first 200 characters of the last assistant
            text), "ended_with_error"}``.
    """

    format: str
    messages: int
    tokens: int
    turns: int
    tool_calls: int
    tools: dict[str, int]
    errors: int
    participants: list[str]
    outcome: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "messages": self.messages, "tokens": self.tokens,
                "turns": self.turns, "tool_calls": self.tool_calls, "tools": self.tools,
                "errors": self.errors, "participants": self.participants,
                "outcome": self.outcome}


def session_format(messages: Sequence[Mapping[str, Any]]) -> Format:
    """The wire format of a stored history (Anthropic when it cannot be told)."""
    try:
        return detect_format(messages)
    except InvalidHistoryError:
        return Format.ANTHROPIC


def _user_text(m: Mapping[str, Any]) -> str:
    return "\n".join(str(b.get("text", "")) for b in blocks(m) if b.get("type") == "text").strip()


def _is_error_result(m: Mapping[str, Any]) -> int:
    n = 0
    for b in blocks(m):
        if b.get("type") == "tool_result" and (b.get("is_error") or
                                                _ERROR_TEXT.match(tool_result_text(b))):
            n += 1
    if m.get("role") == "tool" and _ERROR_TEXT.match(str(m.get("content") or "")):
        n += 1
    return n


def profile(messages: Sequence[Mapping[str, Any]], counter: TokenCounter) -> Profile:
    """The :class:`Profile` of a history (any format)."""
    fmt = session_format(messages)
    roles: list[str] = []
    speakers: Counter[str] = Counter()
    turns = errors = 0
    waiting_user = False
    final_text, last_error = "", False
    for m in messages:
        role = str(m.get("role"))
        if role not in roles:
            roles.append(role)
        err = _is_error_result(m)
        errors += err
        if err:
            last_error = True
        text = _user_text(m)
        sm = _SPEAKER.match(text)
        if sm:
            speakers[sm.group(1)] += 1
        if role == "user" and text:
            waiting_user = True
        elif role == "assistant":
            if waiting_user:
                turns += 1
            waiting_user = False
            if text:
                final_text, last_error = text, False
    tools = dict(tool_counts(messages))
    last_role = str(messages[-1].get("role")) if messages else None
    return Profile(
        format=fmt.value, messages=len(messages),
        tokens=sum(message_tokens(m, fmt, counter) for m in messages), turns=turns,
        tool_calls=sum(tools.values()), tools=tools, errors=errors,
        participants=roles + [f"speaker:{s}" for s, n in speakers.items() if n >= 2],
        outcome={"last_role": last_role, "final_text": " ".join(final_text.split())[:200],
                 "ended_with_error": last_error})


@dataclass(frozen=True)
class Importance:
    """A session's importance score (0..1), whether it counts as important, and why.

    Attributes:
        score: ``1.0`` when user-marked, else sum of ``weight * min(1, value / saturation)``
            over length (tokens), turns, errors and tool calls.
        important: ``marked or score >= threshold``.
        marked: the user marked it (``compactor archive mark`` or a ``marked`` pattern).
        signals: each signal's contribution to the score.
    """

    score: float
    important: bool
    marked: bool
    signals: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "important": self.important, "marked": self.marked,
                "signals": self.signals}


def importance(p: Profile, cfg: ImportanceConfig, *, marked: bool = False,
               session_id: str | None = None) -> Importance:
    """Score a session from its profile (signals documented in :class:`ImportanceConfig`)."""
    if session_id is not None and any(fnmatch.fnmatchcase(session_id, pat) for pat in cfg.marked):
        marked = True
    signals = {
        "length": cfg.weight_length * min(1.0, p.tokens / cfg.length_tokens),
        "turns": cfg.weight_turns * min(1.0, p.turns / cfg.turns),
        "errors": cfg.weight_errors * min(1.0, p.errors / cfg.errors),
        "tool_use": cfg.weight_tools * min(1.0, p.tool_calls / cfg.tool_calls),
    }
    signals = {k: round(v, 4) for k, v in signals.items()}
    score = 1.0 if marked else round(min(1.0, sum(signals.values())), 4)
    return Importance(score, marked or score >= cfg.threshold, marked, signals)


def due_tier(age_days: float, important: bool, tiers: TierConfig, imp: ImportanceConfig) -> Tier:
    """The tier a session of ``age_days`` (days since its last activity) belongs in.
    Important sessions age ``imp.age_factor`` times slower."""
    a = age_days / (imp.age_factor if important else 1.0)
    if a < tiers.full_days:
        return Tier.FULL
    if a < tiers.key_points_days:
        return Tier.KEY_POINTS
    if a < tiers.brief_days:
        return Tier.BRIEF
    return Tier.METADATA


def condensed_transcript(messages: Sequence[Mapping[str, Any]], budget: int,
                         counter: TokenCounter) -> str | None:
    """Every message in order as one line ``role: text`` (tool calls and results included,
    whitespace folded), each line's text cut to its first ``L`` characters (`` …`` marks a
    cut), with ``L`` the largest that keeps the whole within ``budget`` tokens (binary
    search). Returns None when even the shortest lines do not fit (then a summary is the
    only form that does). Pure."""
    lines = [(str(m.get("role")), " ".join(text_of(m).split())) for m in messages]
    lines = [(r, t) for r, t in lines if t]
    if not lines:
        return None

    def render(cap: int) -> str:
        return "\n".join(f"{r}: {t}" if len(t) <= cap else f"{r}: {t[:cap].rstrip()} …"
                         for r, t in lines)

    longest = max(len(t) for _, t in lines)
    if counter.count(render(longest)) <= budget:
        return render(longest)
    lo, hi = 0, longest          # invariant: render(lo) fits (checked below), render(hi) not
    if counter.count(render(lo)) > budget:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if counter.count(render(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    return render(lo)


def tier_form(tier: Tier, messages: Sequence[Mapping[str, Any]], tokens: int,
              tiers: TierConfig, counter: TokenCounter) -> dict[str, Any] | None:
    """The readable form a tier keeps, or ``None`` (full: the lossless archive itself;
    metadata only: the metadata block).

    Key points: the :func:`condensed_transcript` of the session within ``key_points_share
    * tokens`` — every turn, in order, each shortened as far as the budget needs (so the
    form takes close to its share). The brief summary: the offline
    :class:`ExtractiveSummarizer`'s output with a budget of ``brief_share * tokens``
    (near-duplicate skipping off); key points fall back to it too when even one-word lines
    would not fit. Returns ``{"kind", "text", "tokens", "target_share", "share"}`` (tokens
    of the form; ``share`` = tokens / the session's tokens).
    """
    if tier not in (Tier.KEY_POINTS, Tier.BRIEF) or not messages:
        return None
    share = tiers.key_points_share if tier is Tier.KEY_POINTS else tiers.brief_share
    budget = max(24, int(tokens * share))
    text = condensed_transcript(messages, budget, counter) if tier is Tier.KEY_POINTS else None
    if text is None:
        req = SummaryRequest(messages=messages, fmt=session_format(messages),
                             previous_summary=None, max_tokens=budget, counter=counter)
        text = ExtractiveSummarizer(novelty=0.0).summarize_sync(req)
    n = counter.count(text)
    return {"kind": tier.value, "text": text, "tokens": n, "target_share": share,
            "share": round(n / tokens, 4) if tokens else 0.0}

