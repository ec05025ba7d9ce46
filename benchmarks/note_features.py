"""Which surface marks of a note predict that it holds a probe answer.

The offline summarizer keeps far more notes in its checkpoint than a summary budget can
render; the render's greedy (``compactor._checkpoint._greedy_pool``) weights each line by
``specificity`` (names, numbers, quoted titles, time anchors; questions half). This script
prints the evidence for those marks on the shared transcripts: every sentence the
checkpoint would keep as a note (the storage cap lifted, so the sample is not biased by the
current score), whether it holds the answer of a probe the full history holds, and per
mark the share of notes holding an answer and its lift over all notes.

Then, side by side in one run, the end-of-conversation replay (the shipped defaults) with
``specificity`` as shipped and with it replaced by a constant 1.0: probes kept of the
ceiling, per data set and window (20-30% of each conversation: where a conversation ends
in the compaction cycle moves one window's figure by several answers, so one window alone
says little).

Usage::

    python benchmarks/note_features.py [--data ../shared/data]    # about 13 minutes on 2 CPUs

Needs the shared data folder (``locomo_dev.jsonl``, ``miniswe_deepseek_swebench.openai.jsonl``).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import compactor._checkpoint as C
from compactor import MessageCompactor
from compactor._config import load_config
from compactor._facts import normalize
from compactor._replay import ReplayStats, _context_text, _scored, load_conversations, \
    replay_conversation

FILES = ("locomo_dev.jsonl", "miniswe_deepseek_swebench.openai.jsonl")

MARKS = {
    "name (capitalised word inside)": lambda b: bool(C._CAPWORD.search(b)),
    "number": lambda b: bool(C._NUM.search(b)),
    "quoted title": lambda b: bool(C._QUOTED.search(b)),
    "time anchor": lambda b: bool(C._TIME.search(b)),
    "question": lambda b: b.rstrip().endswith("?"),
    "none of these": lambda b: not (C._CAPWORD.search(b) or C._NUM.search(b)
                                    or C._QUOTED.search(b) or C._TIME.search(b)
                                    or b.rstrip().endswith("?")),
}


def note_rows(path: Path) -> list[tuple[str, bool]]:
    """(note text, holds an answer) for every note of every conversation in ``path``."""
    rows: list[tuple[str, bool]] = []
    caps = dict(C.CAPS)
    C.CAPS["notes"] = 10 ** 9          # every note, not the ones the cap's score keeps
    try:
        for conv in load_conversations(path):
            cp, _ = C.update(None, conv.messages, conv.fmt, list(range(len(conv.messages))))
            full = " " + normalize(_context_text(conv.system, conv.messages)) + " "
            answers = [a for a in (_scored(p) for p in conv.probes) if a and f" {a} " in full]
            for it in cp.notes:
                hay = " " + normalize(it.text) + " "
                rows.append((it.text, any(f" {a} " in hay for a in answers)))
    finally:
        C.CAPS.clear()
        C.CAPS.update(caps)
    return rows


def lift_table(name: str, rows: list[tuple[str, bool]]) -> None:
    base = sum(a for _, a in rows) / max(1, len(rows))
    print(f"\n{name}: {len(rows)} notes, {base:.1%} hold an answer")
    print(f"| mark | notes | hold an answer | lift |\n|---|---:|---:|---:|")
    for mark, has in MARKS.items():
        sel = [a for t, a in rows if has(C._strip_speaker(t))]
        if not sel:
            print(f"| {mark} | 0 | - | - |")
            continue
        p = sum(sel) / len(sel)
        print(f"| {mark} | {len(sel)} | {p:.1%} | {p / base if base else 0:.2f}x |")


WINDOWS = (0.20, 0.22, 0.25, 0.28, 0.30)


async def replay_end(path: Path, share: float) -> tuple[int, int]:
    conf = load_config(None)
    stats = ReplayStats()
    for conv in load_conversations(path):
        comp = MessageCompactor(config=conf.plan, windows=conf.windows)
        await replay_conversation(conv, comp, stats, window=None, share=share, tools=None)
    return stats.probes_contained, stats.probes_ceiling


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                    help="the shared data folder (default: ../shared/data)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    missing = [f for f in FILES if not (data / f).is_file()]
    if missing:
        print(f"note_features: {data} lacks {', '.join(missing)}; fix: --data DIR", file=sys.stderr)
        return 2
    for f in FILES:
        lift_table(f, note_rows(data / f))
    print("\nend of conversation, shipped defaults: probes kept / ceiling")
    print("| data | window | specificity as shipped | specificity = 1.0 |\n|---|---:|---:|---:|")
    shipped = C.specificity
    flat = lambda text: 1.0  # noqa: E731
    for f in FILES:
        sums = [0, 0, 0]
        for share in WINDOWS:
            C.specificity = shipped
            a, ceil = asyncio.run(replay_end(data / f, share))
            C.specificity = flat
            try:
                b, _ = asyncio.run(replay_end(data / f, share))
            finally:
                C.specificity = shipped
            sums = [sums[0] + a, sums[1] + b, sums[2] + ceil]
            print(f"| {f} | {share:.0%} | {a} / {ceil} | {b} / {ceil} |", flush=True)
        print(f"| {f} | all | {sums[0]} / {sums[2]} | {sums[1]} / {sums[2]} "
              f"(ratio {sums[0] / max(1, sums[1]):.3f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
