"""End to end against a real HTTP model on 127.0.0.1 (compactor.testing.LoopbackServer,
the Anthropic SDK): hard mode never sends a request over its budget, by the server's own
token count; soft mode never fails a call and records each bump. The server's tokenizer
is deliberately unlike ours (3.1 vs 3.6 characters per token, other framing), so the
monitor's correction and exact counts are exercised."""

from __future__ import annotations

import random
from pathlib import Path

import anthropic
import pytest

from compactor import HeuristicCounter, MemorySink, MessageCompactor
from compactor.budgets import BudgetMonitor, HardBudgetExceededError, load_config
from compactor.testing import MESSAGES_PATH, LoopbackServer

CONFIG = """\
[settings]
enforcement = "soft"
[profiles.p1]
budget_tokens = 1_500
weights = { global = 0.3, recent = 0.5, patterns = 0.2 }
[profiles.p2]
budget_tokens = 3_000
weights = { global = 0.3, recent = 0.5, patterns = 0.2 }
[profiles.p3]
budget_tokens = 6_000
weights = { global = 0.3, recent = 0.5, patterns = 0.2 }
[agents]
small = "p1"
medium = "p2"
"""
MODEL, MAX_TOKENS = "claude-sonnet-4-6", 200
SYSTEM = "You are a careful build agent. Use the tools; report what you changed."
TOOLS = [{"name": "run", "description": "run a shell command",
          "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}},
                           "required": ["cmd"]}}]
WORDS = ("build deploy cache module parser token budget ledger window service config "
         "request retry timeout schema index migration worker queue report").split()
STEPS = 5
N_INVOCATIONS = 8
#: (invocation, step) pairs whose tool result alone is larger than the agent's budget.
HUGE = {(0, 3), (3, 2), (4, 4), (7, 1)}


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + "."


def _script(budgets: dict[str, int]) -> list[list[tuple[dict, dict]]]:
    """Per invocation, the scripted (assistant tool_use, user tool_result) turns."""
    rng = random.Random(7)
    out = []
    for i in range(N_INVOCATIONS):
        agent = "small" if i % 2 == 0 else "medium"
        turns = []
        for s in range(STEPS):
            tid = f"toolu_{i:02d}_{s}"
            # a huge result is 1.2x the budget in the server's units (3.1 chars per token)
            n = int(budgets[agent] * 3.1 * 1.2 / 6) if (i, s) in HUGE else rng.randint(90, 170)
            turns.append((
                {"role": "assistant", "content": [
                    {"type": "text", "text": _text(rng, 12)},
                    {"type": "tool_use", "id": tid, "name": "run",
                     "input": {"cmd": f"make step-{s}"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": tid, "content": _text(rng, n)}]}))
        out.append(turns)
    return out


async def _drive(server: LoopbackServer, mode: str, sink: MemorySink,
                 exact: bool) -> tuple[list[tuple[int, int]], set[int], list[int]]:
    """Run the script through BudgetMonitor + MessageCompactor + the Anthropic SDK.

    Returns ``(sent, blocked, raw)``: per request sent, (server-counted input tokens,
    the invocation's budget when sent); the invocations hard mode blocked; and, per step,
    the server's count of the *uncompacted* request (the control)."""
    cfg = load_config(_cfg_path)
    monitor = BudgetMonitor(cfg, sink=sink, enforcement=mode)
    base = {a: cfg.profiles[p].budget_tokens for a, p in cfg.agents.items()}
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=0)
    sent, blocked, raw = [], set(), []

    async def count(messages):
        r = await client.messages.count_tokens(model=MODEL, system=SYSTEM, tools=TOOLS,
                                               messages=messages)
        return r.input_tokens

    for i, turns in enumerate(_script(base)):
        agent = "small" if i % 2 == 0 else "medium"
        comp = MessageCompactor(counter=HeuristicCounter(), agent_id=agent, sink=sink)
        history = [{"role": "user", "content": "Build the project and fix what fails: "
                    + _text(random.Random(i), 30)}]
        with monitor.start(agent, complexity="medium", model=MODEL, max_tokens=MAX_TOKENS,
                           session_id=f"s{i}") as inv:
            assert inv.base.tokens == base[agent]
            for s, (call, result) in enumerate(turns):
                history += [call, result]
                raw.append((server.tokenizer.count({"system": SYSTEM, "tools": TOOLS,
                                                    "messages": history}), inv.base.tokens))
                try:
                    r = await inv.compact(comp, history, system=SYSTEM, tools=TOOLS,
                                          max_tokens=MAX_TOKENS,
                                          count_tokens=count if exact else None)
                except HardBudgetExceededError:
                    blocked.add(i)
                    break
                before = len(server.requests_to(MESSAGES_PATH))
                resp = await client.messages.create(model=MODEL, system=SYSTEM, tools=TOOLS,
                                                    max_tokens=MAX_TOKENS, messages=r.messages)
                req = server.requests_to(MESSAGES_PATH)[before]
                sent.append((server.tokenizer.count(req.json), inv.budget.tokens))
                inv.record_usage(resp.usage.input_tokens, resp.usage.output_tokens)
    await client.close()
    return sent, blocked, raw


_cfg_path: Path


@pytest.fixture(autouse=True)
def _config(tmp_path):
    global _cfg_path
    _cfg_path = tmp_path / "budgets.toml"
    _cfg_path.write_text(CONFIG)


@pytest.mark.parametrize("exact", [True, False], ids=["count_tokens", "corrected-estimate"])
async def test_hard_mode_never_sends_a_request_over_budget(exact):
    """Hard mode: every request the server received is within the invocation's budget
    (server's count); exactly the invocations with an oversized tool result are blocked;
    without the monitor many requests would have been over budget (the control)."""
    sink = MemorySink()
    with LoopbackServer() as server:
        sent, blocked, raw = await _drive(server, "hard", sink, exact)
        assert server.violations == []
    assert sent and all(tokens <= budget for tokens, budget in sent), \
        [x for x in sent if x[0] > x[1]]
    assert blocked == {i for i, _ in HUGE}
    assert sum(t > b for t, b in raw) > len(HUGE)         # the control: not trivially true
    usage = sink.of("usage")
    assert len(usage) == N_INVOCATIONS
    assert sorted(u["blocked"] for u in usage) == \
        [0] * (N_INVOCATIONS - len(HUGE)) + [1] * len(HUGE)
    assert sink.of("budget_bump") == []
    critical = {a["invocation_id"] for a in sink.of("budget_alert") if a["level"] == "critical"}
    assert len(critical) == len(HUGE)


async def test_soft_mode_never_fails_and_records_each_bump():
    """Soft mode: every step's call is sent and answered; each invocation with an
    oversized tool result moves one profile up (a budget_bump record), the others never;
    every request is within the budget current when it was sent."""
    sink = MemorySink()
    with LoopbackServer() as server:
        sent, blocked, _ = await _drive(server, "soft", sink, exact=True)
        assert server.violations == []
        assert len(server.requests_to(MESSAGES_PATH)) == N_INVOCATIONS * STEPS
    assert blocked == set() and len(sent) == N_INVOCATIONS * STEPS
    assert all(tokens <= budget for tokens, budget in sent)
    bumps = sink.of("budget_bump")
    assert len({b["invocation_id"] for b in bumps}) == len(HUGE)
    assert all(b["used_tokens"] > b["budget_tokens_before"] for b in bumps)
    assert {(b["from_profile"], b["to_profile"]) for b in bumps} <= {("p1", "p2"), ("p2", "p3")}
    usage = sink.of("usage")
    assert sum(u["bumps"] for u in usage) == len(bumps)
    assert sum(u["exceeded"] for u in usage) == len(HUGE)
    forced = [c for c in sink.of("compaction") if c["window"] > 1_500 + MAX_TOKENS]
    assert forced, "a bumped invocation compacts toward its new budget"
