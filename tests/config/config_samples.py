"""A compactor.toml holding every table with non-default values, and helpers to write
variants of it (for the config tests)."""

from __future__ import annotations

from pathlib import Path

FULL = """\
[compactor]
high_watermark = 0.8
low_watermark = 0.5
keep_recent = 6
keep_first_user = true
max_summary_tokens = 1500
summary_share = 0.6
overflow = "truncate_tool_results"
counter = "heuristic"
summarize = true
max_concurrency = 2
reserve_output_tokens = 4096
window = 100_000
agent_id = "sample-agent"

[windows]
default_tier = "fast"

[windows.tier_windows]
coding = 100_000
general = 16_000

[windows.model_tiers]
"acme-big-*" = "orchestrator"
"acme-*" = "reasoning"

[windows.model_windows]
"acme-tiny" = 8_000

[budgets.settings]
default_profile = "small"
enforcement = "hard"

[budgets.alerts]
info = 0.5
warning = 0.8
critical = 1.0

[budgets.profiles.small]
budget_tokens = 20_000
weights = { global = 0.2, recent = 0.6, patterns = 0.2 }

[budgets.profiles.large]
budget_tokens = 90_000
weights = { global = 0.5, recent = 0.3, patterns = 0.2 }

[budgets.agents]
bot = "large"

[maintenance]
counter = "heuristic"
ledger_rotate_mb = 32

[maintenance.tiers]
full_days = 3
key_points_days = 20

[maintenance.health]
no_compaction_level = "critical"

[store]
root = "data/store"

[ledger]
path = "data/ledger/ledger.jsonl"
fsync = "never"
rotate_bytes = 1_000_000
"""


def write(folder: Path, text: str = FULL, name: str = "compactor.toml") -> Path:
    """Write ``text`` to ``folder/name`` and return the path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def variant(old: str, new: str) -> str:
    """FULL with its first ``old`` replaced by ``new`` (``old`` must occur in FULL)."""
    assert old in FULL, old
    return FULL.replace(old, new, 1)
