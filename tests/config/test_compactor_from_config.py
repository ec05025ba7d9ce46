"""`compactor_from_config` builds a MessageCompactor whose plan, windows, counter, store and
ledger are what the file said; keyword overrides win over the file."""

from __future__ import annotations

import os
import tomllib
from dataclasses import fields

from compactor import HeuristicCounter, MemorySink, PlanConfig, Tier
from compactor._config import compactor_from_config, load_config, shipped_path

from config_samples import write


def test_plan_and_windows_equal_the_file(tmp_path):
    """Every [compactor] and [windows] value of the sample file reaches the compactor."""
    path = write(tmp_path)
    comp = compactor_from_config(load_config(path))
    try:
        assert comp.config == PlanConfig(high_watermark=0.8, low_watermark=0.5, keep_recent=6,
                                         keep_first_user=True, max_summary_tokens=1500,
                                         summary_share=0.6, overflow="truncate_tool_results")
        assert isinstance(comp.counter, HeuristicCounter)
        assert (comp.window, comp.reserve_output_tokens, comp.max_concurrency,
                comp.summarize, comp.agent_id) == (100_000, 4096, 2, True, "sample-agent")
        w = comp.windows
        assert dict(w.tier_windows) == {Tier.CODING: 100_000, Tier.GENERAL: 16_000}
        assert list(w.model_tiers) == [("acme-big-*", Tier.ORCHESTRATOR),
                                       ("acme-*", Tier.REASONING)]
        assert dict(w.model_windows) == {"acme-tiny": 8_000}
        assert w.default_tier is Tier.FAST
        # what the map means: first matching pattern wins, then the tier's window
        assert w.window_for("acme-big-2") == 200_000
        assert w.window_for("acme-mid") == 64_000
        assert w.window_for("acme-tiny") == 8_000
        assert w.window_for("claude-sonnet-4-5") == 100_000     # built-in rule, our window
        assert w.window_for("someone-elses-model") == 32_000    # default tier fast
    finally:
        comp.sink.close()


def test_store_and_ledger_are_built_relative_to_the_file(tmp_path):
    """[store] root and [ledger] path (relative) are resolved against the file's folder;
    the ledger gets the file's fsync policy and rotation size."""
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf")
    comp = compactor_from_config(path)
    try:
        assert os.path.samefile(comp.store.root, tmp_path / "conf" / "data" / "store")
        assert comp.sink.path == tmp_path / "conf" / "data" / "ledger" / "ledger.jsonl"
        assert (comp.sink.fsync, comp.sink.rotate_bytes) == ("never", 1_000_000)
    finally:
        comp.sink.close()


def test_overrides_win_and_skip_building_what_they_replace(tmp_path):
    """Keyword overrides replace config values; an overridden sink means no ledger file
    is opened."""
    path = write(tmp_path)
    sink = MemorySink()
    comp = compactor_from_config(path, sink=sink, summarize=False, agent_id="a1")
    assert comp.sink is sink and comp.summarize is False and comp.agent_id == "a1"
    assert comp.config.keep_recent == 6
    assert not (tmp_path / "data" / "ledger").exists()


def test_no_store_or_ledger_unless_configured(tmp_path, monkeypatch):
    """With the shipped defaults (no file, no env) there is no store and no ledger, and
    the plan is what the shipped compactor.toml writes, which is PlanConfig's defaults."""
    monkeypatch.chdir(tmp_path)
    for var in ("COMPACTOR_CONFIG", "COMPACTOR_HOME", "COMPACTOR_LEDGER", "COMPACTOR_BUDGETS"):
        monkeypatch.delenv(var, raising=False)
    comp = compactor_from_config(counter=HeuristicCounter())
    assert comp.store is None and type(comp.sink).__name__ == "NullSink"
    shipped = tomllib.loads(shipped_path().read_text())["compactor"]
    written = {f.name: shipped[f.name] for f in fields(PlanConfig) if f.name in shipped}
    assert len(written) >= 10                      # the shipped file writes out the plan keys
    assert comp.config == PlanConfig(**written) == PlanConfig()
    assert comp.window is None and comp.windows.window_for("claude-opus-4-1") == 200_000


async def test_a_compactor_from_the_file_compacts_into_its_store_and_ledger(tmp_path):
    """With a small window from the file, a long history is compacted; the configured ledger
    receives the compaction record and the configured store gives the full history back."""
    import json

    path = write(tmp_path, '[compactor]\nwindow = 1200\ncounter = "heuristic"\nkeep_recent = 2\n'
                           '[store]\nroot = "st"\n[ledger]\npath = "lg/ledger.jsonl"\n'
                           'fsync = "always"\n')
    history = []
    for i in range(12):
        history.append({"role": "user", "content": f"Question {i}: " + "details " * 40})
        history.append({"role": "assistant", "content": f"Answer {i}: " + "reasons " * 40})
    comp = compactor_from_config(path)
    try:
        result = await comp.compact_if_needed(history, session_id="s1")
    finally:
        comp.sink.close()
    assert result.compacted and result.tokens_after < 1200 < result.tokens_before
    records = [json.loads(line) for line in
               (tmp_path / "lg" / "ledger.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["compaction"]
    assert records[0]["session_id"] == "s1"
    assert comp.store.restore("s1") == history
