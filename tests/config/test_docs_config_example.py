"""docs/config.md stays true: its complete example file passes `config check` and loads
to the values it shows, and every key the loader knows is described on the page."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from compactor import PlanConfig, Tier
from compactor._config import KEYS, load_config
from compactor.maintenance import MaintenanceConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- file: compactor\.toml -->\n```toml\n(.*?)```", text, re.S)
    assert m, "docs/config.md lost its example file"
    return m.group(1)


def test_the_documented_example_passes_check(tmp_path, compactor_cli):
    """The page's complete example file: `config check` prints OK and exits 0."""
    path = tmp_path / "compactor.toml"
    path.write_text(_example(), encoding="utf-8")
    run = compactor_cli("config", "check", "--config", str(path))
    assert run.code == 0, run.err
    assert run.out.startswith(f"OK: {path}: ") and "2 budget profiles, 1 agents" in run.out


def test_the_documented_example_loads_to_its_values(tmp_path):
    """Every table of the example reaches the loaded config with the value written there."""
    path = tmp_path / "compactor.toml"
    path.write_text(_example(), encoding="utf-8")
    cfg = load_config(path, env={})
    assert cfg.plan == PlanConfig(high_watermark=0.75, low_watermark=0.45, keep_recent=8,
                                  keep_first_user=True, max_summary_tokens=1200,
                                  summary_share=0.5, overflow="truncate_tool_results")
    assert cfg.value("compactor.counter") == "heuristic"
    assert cfg.value("compactor.reserve_output_tokens") == 2048
    assert cfg.windows.window_for("acme-code-7") == 100_000
    assert cfg.windows.window_for("acme-chat") == 16_000
    assert cfg.windows.window_for("acme-tiny") == 8_000
    assert cfg.windows.default_tier is Tier.GENERAL
    assert [p.name for p in cfg.budgets.profiles.values()] == ["worker", "lead"]
    assert cfg.budgets.profile_for("planner").budget_tokens == 120_000
    assert cfg.budgets.profile_for("anyone").name == "worker"
    assert cfg.maintenance.health.failed_check_level == "critical"
    assert cfg.maintenance.store == tmp_path / "compactor-data"
    assert cfg.store_root == tmp_path / "compactor-data"
    assert cfg.ledger_path == tmp_path / "compactor-ledger" / "ledger.jsonl"


def test_every_key_is_described():
    """Each [compactor]/[windows]/[store]/[ledger] key and each [maintenance] field appears
    in the page's tables (as `key`)."""
    text = DOC.read_text(encoding="utf-8")
    names = {k.name for k in KEYS} | {"tier_windows", "model_tiers", "model_windows"}
    m = MaintenanceConfig()
    for section in ("tiers", "importance", "retention", "health"):
        names |= {f.name for f in fields(getattr(m, section))}
    names |= {"store", "ledger", "archive", "counter", "ledger_rotate_mb"}
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert missing == []
