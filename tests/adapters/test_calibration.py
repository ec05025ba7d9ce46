"""Self-calibration against a provider tokenizer unlike ours, and exact counting near the
threshold."""

from __future__ import annotations

import pytest

from compactor import ConfigError, MessageCompactor, PlanConfig
from compactor.adapters import Calibrator
from compactor.adapters.anthropic_sdk import CompactingAnthropic
from compactor.testing import COUNT_TOKENS_PATH, LoopbackServer, ReferenceTokenizer

from adapters_support import AGENT_MODEL, run_agent_loop


async def test_estimate_error_falls_below_3_percent_within_5_responses(raw_client, server,
                                                                      tiktoken_counter):
    """The server counts with a reference tokenizer (3.1 chars a token, 7 a message...),
    ours is tiktoken: the first prediction is off by far more than 3%, and from the 5th
    response on every prediction is within 3%."""
    comp = MessageCompactor(counter=tiktoken_counter)
    client = CompactingAnthropic(raw_client, comp, window=200_000, exact_band=0)
    await run_agent_loop(client, 12)
    state = client.calibration(AGENT_MODEL)
    assert state.observations == 12
    errors = state.errors
    assert errors[0] > 0.10
    assert max(errors[4:]) < 0.03, [round(e, 4) for e in errors]
    assert state.factor > 1.1   # the reference tokenizer counts more tokens than tiktoken


async def test_calibration_also_converges_with_a_sparser_tokenizer(tiktoken_counter):
    """A provider that counts fewer tokens than we do (5 chars a token) is learned too."""
    import anthropic

    with LoopbackServer(tokenizer=ReferenceTokenizer(5.0, per_message=2)) as srv:
        raw = anthropic.AsyncAnthropic(base_url=srv.url, api_key="k")
        client = CompactingAnthropic(raw, MessageCompactor(counter=tiktoken_counter),
                                     window=200_000, exact_band=0)
        await run_agent_loop(client, 10)
        await raw.close()
    state = client.calibration(AGENT_MODEL)
    assert state.factor < 0.95
    assert max(state.errors[4:]) < 0.03


async def test_exact_counting_happens_only_near_the_threshold(raw_client, server: LoopbackServer,
                                                             tiktoken_counter):
    """count_tokens is called only for histories within exact_band of the high watermark
    that were not compacted, and fewer times than there are model calls."""
    comp = MessageCompactor(counter=tiktoken_counter, config=PlanConfig(max_summary_tokens=400))
    client = CompactingAnthropic(raw_client, comp, window=6000, exact_band=0.15)
    stats = await run_agent_loop(client, 40)
    exact = server.requests_to(COUNT_TOKENS_PATH)
    assert 0 < len(exact) == client.exact_counts < stats.turns
    tok = server.tokenizer
    hw = comp.config.high_watermark
    for r in exact:   # by the provider's own count, each was near or past the threshold
        assert tok.count(r.json) >= (1 - 0.15) * hw * (6000 - 256) * 0.9
    assert server.violations == []


def test_calibrator_rejects_bad_settings():
    """Out-of-range decay and bounds raise ConfigError naming the field."""
    with pytest.raises(ConfigError) as e:
        Calibrator(decay=0)
    assert e.value.field == "decay"
    with pytest.raises(ConfigError) as e:
        Calibrator(bounds=(2.0, 3.0))
    assert e.value.field == "bounds"


def test_calibrated_window_reserves_output_in_provider_tokens():
    """One observation is a ratio: with factor 2, a 10,000-token provider window with 1,000
    reserved gives the compactor 4,500 + 1,000 of our tokens (usable 9,000 / 2)."""
    c = Calibrator()
    assert c.observe("m", 100, 200) == pytest.approx(0.5)
    assert c.factor("m") == 2.0
    assert c.window("m", 10_000, 1_000) == 5_500
    assert c.observe("m", 0, 10) is None and c.state("m").observations == 1


def test_fit_learns_a_per_request_offset():
    """Counts that differ by a per-token factor and a fixed per-request overhead
    (provider = 1.2 x ours + 50) are predicted exactly from the third observation on."""
    c = Calibrator(decay=1.0)
    for e in (100, 400, 900, 1600):
        c.observe("m", e, int(1.2 * e + 50))
    s = c.state("m")
    assert s.slope == pytest.approx(1.2) and s.offset == pytest.approx(50)
    assert max(s.errors[2:]) < 1e-9
    assert c.window("m", 10_000, 1_000) == int((9_000 - 50) / 1.2) + 1_000
