"""Running summarizers: the one summary check, chunking of large spans, the fallback chain
and the last-resort notice. A failure falls back; it never becomes content."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import SummarizerError
from ._format import SUMMARY_CLOSE, SUMMARY_OPEN, text_of
from ._redact import redact
from ._summary import Summarizer, SummaryRequest
from ._tokens import message_tokens
from ._units import group_units

if TYPE_CHECKING:  # pragma: no cover
    from ._compactor import MessageCompactor

log = logging.getLogger("compactor")

#: A summary may exceed its input by this many tokens (its headings) before it counts as
#: "longer than its input", which is a failure.
SUMMARY_SLACK_TOKENS = 48


def input_tokens(req: SummaryRequest) -> int:
    """Tokens of what a summary replaces: the span's text, the previous summary and any
    partial summaries, by ``req.counter``."""
    c = req.counter
    return (sum(c.count(text_of(m)) for m in req.messages) + c.count(req.previous_summary or "")
            + sum(c.count(p) for p in req.partials))


def check_summary(text: Any, req: SummaryRequest) -> str:
    """The one summary check: ``text`` without our summary tags, when it is non-empty
    text no longer than its input (plus :data:`SUMMARY_SLACK_TOKENS`); a summary over its
    budget (``req.max_tokens``) is cut at a line boundary.

    Raises:
        SummarizerError: empty or not text, longer than its input, or no line fits.
    """
    if not isinstance(text, str) or not text.strip():
        raise SummarizerError("empty or non-text summary")
    text = text.replace(SUMMARY_OPEN, "").replace(SUMMARY_CLOSE, "").strip()
    c = req.counter
    src = input_tokens(req)
    n = c.count(text)
    if src and n > src + SUMMARY_SLACK_TOKENS:
        raise SummarizerError(f"summary ({n} tokens) is longer than its input ({src} tokens)")
    if n > req.max_tokens:
        lines = text.splitlines()
        while lines and c.count("\n".join(lines)) > req.max_tokens:
            lines.pop()
        text = "\n".join(lines).strip()
        if not text:
            raise SummarizerError(f"summary ({n} tokens) does not fit its budget "
                                  f"({req.max_tokens} tokens)")
    return text


def notice_summary(req: SummaryRequest) -> str:
    """The last resort when every summarizer failed: a notice that messages were removed
    (they are in the archive); the must-keep check then adds the key facts it can."""
    return (f"[{len(req.messages)} earlier messages were removed to fit the context window; "
            "no summary could be produced. Ask to recall them if needed.]")


def _name(s: Summarizer) -> str:
    return str(getattr(s, "name", type(s).__name__))


class SummaryRunner:
    """Runs a compactor's summarizer with its fallback, reporting fallbacks to its sink.

    Args:
        owner: the :class:`~compactor.MessageCompactor` whose ``summarizer``, ``fallback``,
            ``counter``, ``max_concurrency`` and ledger it uses (read at each call, so a
            changed attribute applies at once).
    """

    def __init__(self, owner: "MessageCompactor") -> None:
        self.owner = owner

    async def run(self, req: SummaryRequest, *, session_id: str | None, model: str | None,
                  agent_id: str | None) -> tuple[str, str]:
        """``(summary, summarizer name)``: the primary's summary (chunked if needed), else
        the fallback's, else :func:`notice_summary` (name ``"notice"``). Each fallback
        step emits a ``summarizer_fallback`` record with the error, secrets masked."""
        o = self.owner
        chain = [o.summarizer, o.fallback]
        for k, summarizer in enumerate(chain):
            try:
                return await self.chunked(summarizer, req), _name(summarizer)
            except Exception as e:  # any failure falls back; it never becomes content
                nxt = _name(chain[k + 1]) if k + 1 < len(chain) else "notice"
                log.warning("summarizer %s failed (%s); falling back to %s", _name(summarizer),
                            redact(str(e)), nxt)
                await o._emit("summarizer_fallback", {
                    "session_id": session_id, "agent_id": agent_id, "model": model,
                    "summarizer": _name(summarizer), "fallback": nxt,
                    "error": redact(f"{type(e).__name__}: {e}")[:500]})
        return notice_summary(req), "notice"

    async def call(self, summarizer: Summarizer, req: SummaryRequest) -> str:
        """One summarizer call, checked. A summarizer that offers ``summarize_sync``
        (CPU-bound, like the offline one) runs in a thread, so the event loop keeps
        serving other sessions."""
        sync = getattr(summarizer, "summarize_sync", None)
        if callable(sync):
            text = await asyncio.to_thread(sync, req)
        else:
            text = await summarizer.summarize(req)
        return check_summary(text, req)

    async def chunked(self, summarizer: Summarizer, req: SummaryRequest) -> str:
        """Split a span larger than ``summarizer.input_window`` (tokens) on unit
        boundaries, summarize the chunks concurrently (at most ``max_concurrency`` at
        once), then merge them with a ``partials`` request."""
        o = self.owner
        limit = getattr(summarizer, "input_window", None)
        if not limit:
            return await self.call(summarizer, req)
        counts = [message_tokens(m, req.fmt, o.counter) for m in req.messages]
        prev = o.counter.count(req.previous_summary or "")
        if sum(counts) + prev <= limit:
            return await self.call(summarizer, req)
        chunks: list[list[Mapping[str, Any]]] = [[]]
        size = 0
        for u in group_units(req.messages, req.fmt):
            t = sum(counts[u.start:u.end])
            if chunks[-1] and size + t > limit:
                chunks.append([])
                size = 0
            chunks[-1].extend(req.messages[u.start:u.end])
            size += t
        sem = asyncio.Semaphore(o.max_concurrency)

        async def one(part: list[Mapping[str, Any]]) -> str:
            async with sem:
                return await self.call(summarizer, SummaryRequest(
                    part, req.fmt, None, req.max_tokens, req.counter,
                    session_id=req.session_id, usage=req.usage))

        partials = await asyncio.gather(*(one(c) for c in chunks))
        merge = SummaryRequest((), req.fmt, req.previous_summary, req.max_tokens, req.counter,
                               partials=tuple(partials), session_id=req.session_id,
                               usage=req.usage)
        return await self.call(summarizer, merge)
