"""Issue 12: does the compaction keep *state*? A seeded generator of long sessions and the
measurement of what a rolling summary keeps after 5 rounds.

Each generated session states, early on, rules (some written as two sentences), a goal,
preferences and facts (slot -> value: budgets, regions, deadlines, units, ticket codes,
hosts...), buries them under routine turns and tool calls whose outputs hold other
identifiers (distractors), and later updates some of them in paraphrase ("the budget is
now $300", "switch to eu-west-2", "actually, use metric units", "keep spend under three
hundred dollars"). The transcript is compacted in 5 rounds: round k summarizes (the
previous round's output + the k-th fifth of the session) to a fixed budget of 10 / 20 /
30% of the whole transcript's tokens. Then the last summary is checked, per item type:

- latest kept: the item's latest value (or, for a rule, the whole rule) is in the summary;
- superseded present: an updated item's old value is still in the summary;
- rules whole: every sentence of a rule is there, together.

Targets (issue 12): latest kept >= 90% at 20%; superseded present <= 5%; rules whole.
``--state json`` carries the checkpoint JSON between rounds (what the compactor does once
the session state holds it); ``--state text`` only the previous summary text (the
fallback). The generator is seeded; the same command prints the same table.

    .venv/bin/python benchmarks/state_tracking.py [--sessions 30] [--seed 12] [--state both]
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field, fields
from typing import Any

from compactor import ExtractiveSummarizer, SummaryRequest
from compactor._facts import normalize
from compactor._format import Format
from compactor._tokens import default_counter

ROUTINE = ["Acknowledged. Continuing with the plan.", "Got it, working on it now.",
           "Thanks, that looks fine.", "Okay, proceeding to the next step.",
           "Noted. I'll keep going.", "Sounds good, carry on."]
TOOLS = ["read_file", "run_tests", "search_logs", "query_db"]


@dataclass
class Item:
    """One tracked item: its type, the text that states it, its values over time."""

    kind: str                      # rule | goal | preference | fact
    values: list[str]              # first ... latest (one for items never updated)
    statements: list[str]          # the sentence(s) of each value
    whole: tuple[str, ...] = ()    # for rules: the sentences that must stay together


def _money(rnd: random.Random) -> tuple[int, str]:
    v = rnd.randrange(200, 990, 10)
    return v, f"${v}"


_NUM_WORDS = {200: "two hundred", 300: "three hundred", 400: "four hundred", 500: "five hundred",
              600: "six hundred", 700: "seven hundred", 800: "eight hundred", 900: "nine hundred"}


def _slots(rnd: random.Random) -> list[Item]:
    """Facts with first values and (for some) paraphrased updates."""
    out: list[Item] = []
    # budget: stated as a cap, updated as a limit phrase or "now"
    v1, m1 = _money(rnd)
    v2 = rnd.choice([k for k in _NUM_WORDS if abs(k - v1) > 50])
    if rnd.random() < 0.5:
        upd = f"Keep spend under {_NUM_WORDS[v2]} dollars from here on."
        new = f"{_NUM_WORDS[v2]} dollars"
    else:
        upd, new = f"The budget is now ${v2}.", f"${v2}"
    out.append(Item("fact", [m1, new], [f"The budget cap is {m1} for this project.", upd]))
    # region
    regions = ["eu-west-1", "eu-west-2", "eu-north-5", "us-east-2", "ap-south-3", "ca-central-4"]
    r1, r2 = rnd.sample(regions, 2)
    out.append(Item("fact", [r1, r2], [f"Deploy everything to {r1} for now.",
                                       rnd.choice([f"Switch to {r2}.", f"Actually, move the deployment to {r2}.",
                                                   f"Change the deploy region to {r2}."])]))
    # deadline
    d1 = f"2025-{rnd.randint(3, 6):02d}-{rnd.randint(10, 28):02d}"
    d2 = f"2025-{rnd.randint(7, 11):02d}-{rnd.randint(10, 28):02d}"
    out.append(Item("fact", [d1, d2], [f"The deadline is {d1}.",
                                       rnd.choice([f"The deadline moved to {d2}.",
                                                   f"Update: the deadline is now {d2}.",
                                                   f"Push the deadline to {d2}."])]))
    # units (a word value)
    u1, u2 = rnd.sample(["imperial", "metric"], 2)
    out.append(Item("fact", [u1, u2], [f"Use {u1} units in every chart.",
                                       f"Actually, use {u2} units."]))
    # never updated: a ticket code and a host
    code = "".join(rnd.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(5))
    out.append(Item("fact", [code], [f"The ledger code is {code}."]))
    host = f"db-{rnd.randint(10, 99)}.internal.example.com"
    out.append(Item("fact", [host], [f"The primary database host is {host}."]))
    team = rnd.choice(["Zone/Hsdkaa", "spike/hyopr-35", "ops/kestrel-7", "Team/Orvane"])
    out.append(Item("fact", [team], [f"File every ticket under {team}."]))
    return out


def _rules(rnd: random.Random) -> list[Item]:
    names = ["Dana", "Priya", "Marco", "Lena"]
    who = rnd.choice(names)
    rules = [
        (f"Never push to remote until {who} reviews the work.", "This applies to every branch."),
        ("Do not delete any customer records.", ""),
        ("Always run the full test suite before a release.", "Skipping it needs written approval."),
        ("Only use the staging account for experiments.", ""),
        ("You must redact e-mail addresses in every report.", ""),
    ]
    picked = rnd.sample(rules, 3)
    return [Item("rule", [a + (" " + b if b else "")], [a + (" " + b if b else "")],
                 tuple(x for x in (a, b) if x)) for a, b in picked]


def _prefs(rnd: random.Random) -> list[Item]:
    tone = rnd.choice(["short bullet points", "one-paragraph answers"])
    tz = rnd.choice(["UTC", "CET", "PST"])
    return [Item("preference", [tone], [f"I prefer {tone} in status updates."]),
            Item("preference", [tz], [f"I like all times written in {tz}."])]


def _goal(rnd: random.Random) -> list[Item]:
    what = rnd.choice(["migrate the billing service to the new payments API",
                       "build a quarterly revenue dashboard for the board",
                       "cut the nightly batch runtime below forty minutes"])
    return [Item("goal", [what], [f"My goal is to {what}."])]


def generate(seed: int, n_routine: int = 40) -> tuple[list[dict[str, Any]], list[Item]]:
    """One session (Anthropic format) and its tracked items, from ``seed``."""
    rnd = random.Random(seed)
    items = _goal(rnd) + _rules(rnd) + _prefs(rnd) + _slots(rnd)
    early = [s for it in items for s in it.statements[:1]]
    rnd.shuffle(early)
    msgs: list[dict[str, Any]] = []
    # the early statements, two or three to a user message, each answered
    while early:
        k = min(len(early), rnd.randint(2, 3))
        msgs.append({"role": "user", "content": " ".join(early[:k])})
        early = early[k:]
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": rnd.choice(ROUTINE)}]})
    updates = [(it, it.statements[1]) for it in items if len(it.statements) > 1]
    rnd.shuffle(updates)
    slots_for_updates = sorted(rnd.sample(range(n_routine // 3, n_routine), len(updates)))
    call = 0
    for t in range(n_routine):
        if slots_for_updates and t == slots_for_updates[0]:
            slots_for_updates.pop(0)
            _, text = updates.pop(0)
            msgs.append({"role": "user", "content": text})
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": rnd.choice(ROUTINE)}]})
            continue
        if rnd.random() < 0.4:
            cid = f"toolu_{seed:04d}{call:04d}"
            call += 1
            name = rnd.choice(TOOLS)
            noise = " ".join(f"row {rnd.randint(1, 999)} id=R{rnd.randint(10000, 99999)} "
                             f"amount={rnd.randint(1, 5000)}" for _ in range(rnd.randint(3, 8)))
            msgs.append({"role": "assistant", "content": [
                {"type": "text", "text": f"Checking with {name}."},
                {"type": "tool_use", "id": cid, "name": name, "input": {"arg": f"job-{rnd.randint(1, 99)}"}}]})
            msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": cid,
                                                      "content": noise}]})
        else:
            msgs.append({"role": "user", "content": rnd.choice(ROUTINE)})
        msgs.append({"role": "assistant", "content": [{"type": "text", "text":
                     rnd.choice(ROUTINE) + f" Step {t + 1} of {n_routine} is done."}]})
    return msgs, items


@dataclass
class Tally:
    latest: dict[str, list[int]] = field(default_factory=dict)   # kind -> [kept, total]
    stale: dict[str, list[int]] = field(default_factory=dict)    # kind -> [present, total]
    whole: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, d: dict[str, list[int]], kind: str, ok: bool) -> None:
        c = d.setdefault(kind, [0, 0])
        c[0] += ok
        c[1] += 1


def _has(text: str, value: str) -> bool:
    return (" " + normalize(value) + " ") in (" " + normalize(text) + " ")


def run_session(msgs: list[dict[str, Any]], budget: int, counter: Any, state: str) -> str:
    """Compact the session in 5 rounds at ``budget`` tokens; return the last summary."""
    has_cp = any(f.name == "checkpoint" for f in fields(SummaryRequest))
    n = len(msgs)
    bounds = [round(n * k / 5) for k in range(6)]
    # cut on unit boundaries: never between a tool_use and its tool_result
    for k in range(1, 5):
        b = bounds[k]
        while 0 < b < n and isinstance(msgs[b].get("content"), list) and any(
                x.get("type") == "tool_result" for x in msgs[b]["content"]):
            b += 1
        bounds[k] = b
    summary: str | None = None
    cp = None
    summ = ExtractiveSummarizer()
    for k in range(5):
        part = msgs[bounds[k]:bounds[k + 1]]
        kw: dict[str, Any] = {}
        if has_cp:
            kw = {"ordinals": list(range(bounds[k], bounds[k + 1])),
                  "checkpoint": cp if state == "json" else None}
        req = SummaryRequest(part, Format.ANTHROPIC, summary, budget, counter, **kw)
        summary = summ.summarize_sync(req)
        if has_cp:
            cp = req.out.get("checkpoint")
    return summary or ""


def score(summary: str, items: list[Item], t: Tally) -> None:
    for it in items:
        if it.kind == "rule":
            ok = _has(summary, it.values[-1])
            t.add(t.latest, "rule", ok)
            t.whole[0] += ok
            t.whole[1] += 1
            continue
        t.add(t.latest, it.kind, _has(summary, it.values[-1]))
        for old in it.values[:-1]:
            t.add(t.stale, it.kind, _has(summary, old))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=30)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--routine", type=int, default=40, help="routine turns per session")
    p.add_argument("--state", choices=["json", "text", "both"], default="both")
    a = p.parse_args(argv)
    counter = default_counter()
    sessions = [generate(a.seed * 1000 + s, a.routine) for s in range(a.sessions)]
    states = ["json", "text"] if a.state == "both" else [a.state]
    print(f"{a.sessions} sessions (seed {a.seed}, {a.routine} routine turns each), 5 rounds")
    print(f"{'state':5s} {'budget':>6s} | latest kept: {'rule':>6s} {'goal':>6s} {'pref':>6s} "
          f"{'fact':>6s} {'all':>6s} | superseded present: {'fact':>6s} | rules whole")
    for state in states:
        for share in (0.10, 0.20, 0.30):
            t = Tally()
            for msgs, items in sessions:
                total = sum(counter.count(str(m["content"])) for m in msgs)
                score(run_session(msgs, max(24, int(share * total)), counter, state), items, t)

            def pct(c: list[int] | None) -> str:
                return f"{100 * c[0] / c[1]:5.1f}%" if c and c[1] else "   -  "

            allk = [sum(v[0] for v in t.latest.values()), sum(v[1] for v in t.latest.values())]
            stale = [sum(v[0] for v in t.stale.values()), sum(v[1] for v in t.stale.values())]
            print(f"{state:5s} {int(share * 100):5d}% | {'':13s}{pct(t.latest.get('rule'))} "
                  f"{pct(t.latest.get('goal'))} {pct(t.latest.get('preference'))} "
                  f"{pct(t.latest.get('fact'))} {pct(allk)} | {'':20s}{pct(stale)} | "
                  f"{t.whole[0]}/{t.whole[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
