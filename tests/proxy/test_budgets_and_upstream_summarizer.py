"""Per-agent budgets through the proxy (alerts in the ledger, named by the
``x-compactor-agent`` header; a hard budget refuses a call before it goes upstream), and
the summarizer that calls the caller's own upstream with the caller's credentials and a
cheap model."""

from __future__ import annotations

import asyncio
import json

import httpx

from proxy_agents import anthropic_agent, openai_agent, tool_model
from proxy_helpers import served
from compactor import HeuristicCounter, MemorySink, MessageCompactor
from compactor.budgets import parse_config
from compactor.proxy import Proxy, ProxyServer, ProxySettings
from compactor.testing import LoopbackServer

KEY = "sk-ant-api03-budget-Mn4Bv6Cx8Za0Sd2Fg"


def budgets(enforcement: str) -> object:
    """A small 'worker' profile (3,000 tokens) and a 'lead' one; planner is a worker.
    Alerts at 30% and 50% (compaction starts at 75% of the budget, so the default 75%
    alert would fire only when our estimate ran low)."""
    return parse_config({
        "settings": {"default_profile": "lead", "enforcement": enforcement},
        "alerts": {"info": 0.3, "warning": 0.5, "critical": 1.0},
        "profiles": {
            "worker": {"budget_tokens": 3000, "weights": {"global": 0.3, "recent": 0.5,
                                                          "patterns": 0.2}},
            "lead": {"budget_tokens": 50000, "weights": {"global": 0.3, "recent": 0.5,
                                                         "patterns": 0.2}}},
        "agents": {"planner": "worker"}})


def test_budget_alerts_per_agent_in_the_ledger() -> None:
    """An agent named by header reaches 30/50% of its small budget: budget_alert records
    name that agent and its profile, and its usage record counts every call."""
    sink = MemorySink()
    compactor = MessageCompactor(counter=HeuristicCounter())
    with LoopbackServer(tool_model) as up:
        proxy = Proxy(ProxySettings(anthropic_upstream=up.url, budgets=True),
                      compactor=compactor, sink=sink, budget_config=budgets("soft"))
        with ProxyServer(proxy, "127.0.0.1", 0) as server:
            asyncio.run(anthropic_agent(server.url, KEY, 1, 16, stream=False,
                                        headers={"x-compactor-agent": "planner"}))
        assert up.violations == []
    alerts = sink.of("budget_alert")
    assert alerts and {a["agent_id"] for a in alerts} == {"planner"}
    assert {a["profile"] for a in alerts} == {"worker"}
    assert {"info", "warning"} <= {a["level"] for a in alerts}
    usage = sink.of("usage")
    assert len(usage) == 1 and usage[0]["agent_id"] == "planner" and usage[0]["calls"] == 16
    assert KEY not in json.dumps(sink.records)


def test_hard_budget_refuses_before_sending() -> None:
    """Hard enforcement: a request whose floor cannot fit the agent's budget is answered
    400 by the proxy and never reaches the upstream."""
    big = {"model": "claude-sonnet-4-6", "max_tokens": 32,
           "messages": [{"role": "user", "content": "word " * 4000}]}
    with LoopbackServer(tool_model) as up:
        proxy = Proxy(ProxySettings(anthropic_upstream=up.url, budgets=True),
                      compactor=MessageCompactor(counter=HeuristicCounter()),
                      budget_config=budgets("hard"))
        with ProxyServer(proxy, "127.0.0.1", 0) as server:
            r = httpx.post(server.url + "/v1/messages", json=big, trust_env=False,
                           headers={"x-api-key": KEY, "x-compactor-agent": "planner"})
        assert r.status_code == 400 and "budget" in r.json()["error"]["message"]
        assert up.requests == []


def test_upstream_summarizer_uses_the_callers_upstream_and_cheap_model() -> None:
    """With summarizer='upstream', each compaction's summary is a call to the same upstream
    with the caller's credentials and the configured cheap model (anthropic and openai),
    and the compaction records name that summarizer."""
    sink = MemorySink()
    compactor = MessageCompactor(window=2500, counter=HeuristicCounter(), sink=sink)
    with LoopbackServer(tool_model) as up, \
            served(up.url, compactor=compactor, summarizer="upstream") as proxy:
        async def both() -> None:
            await anthropic_agent(proxy.url, KEY, 1, 14, stream=True)
            await openai_agent(proxy.url + "/v1", KEY, 2, 14, stream=False)

        asyncio.run(both())
        assert up.violations == []
        summary_calls = [r for r in up.requests if r.model in ("claude-haiku-4-5", "gpt-4o-mini")]
    assert {r.model for r in summary_calls} == {"claude-haiku-4-5", "gpt-4o-mini"}
    assert all(r.had_credentials for r in summary_calls)
    assert {r.path for r in summary_calls} == {"/v1/messages", "/v1/chat/completions"}
    # compactions that wrote a summary (a compaction that only clears old tool results
    # writes none) name the upstream summarizer and its tokens
    summarized = [r for r in sink.of("compaction") if r["summarizer"] is not None]
    assert summarized and all(r["summarizer"] == "proxy-upstream" for r in summarized)
    assert all(r["summarizer_input_tokens"] > 0 for r in summarized)
