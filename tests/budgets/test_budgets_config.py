"""Budget profiles in TOML: the shipped defaults, and ten kinds of bad config, each one
clear error naming the file, the key and the fix (in code and through the CLI)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from compactor import ConfigError
from compactor.budgets import (BudgetConfigError, default_config, default_config_path,
                               load_config)

GOOD = """\
[settings]
default_profile = "small"
enforcement = "soft"

[alerts]
info = 0.75
warning = 0.9
critical = 1.0

[profiles.small]
budget_tokens = 20_000
weights = { global = 0.2, recent = 0.6, patterns = 0.2 }

[profiles.large]
budget_tokens = 100_000
weights = { global = 0.5, recent = 0.3, patterns = 0.2 }

[agents]
bot = "small"
"""

#: (case id, text substituted into GOOD as (old, new), the key the error must name)
BAD = [
    ("toml-syntax", ("budget_tokens = 20_000", "budget_tokens = = 20_000"), "line 11"),
    ("unknown-table", ("[agents]", "[agent]"), "agent"),
    ("unknown-profile-key", ("budget_tokens = 20_000", "budget_token = 20_000"),
     "profiles.small.budget_token"),
    ("negative-budget", ("budget_tokens = 20_000", "budget_tokens = -5"),
     "profiles.small.budget_tokens"),
    ("budget-as-string", ("budget_tokens = 20_000", 'budget_tokens = "20k"'),
     "profiles.small.budget_tokens"),
    ("weights-sum", ("global = 0.2, recent = 0.6", "global = 0.3, recent = 0.6"),
     "profiles.small.weights"),
    ("unknown-scope", ("global = 0.2, recent = 0.6", "global = 0.2, recnet = 0.6"),
     "profiles.small.weights.recnet"),
    ("agent-undefined-profile", ('bot = "small"', 'bot = "smal"'), "agents.bot"),
    ("bad-enforcement", ('enforcement = "soft"', 'enforcement = "strict"'),
     "settings.enforcement"),
    ("alerts-out-of-order", ("warning = 0.9", "warning = 0.7"), "alerts"),
]


def _write(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GOOD, old
    path = tmp_path / "budgets.toml"
    path.write_text(GOOD.replace(old, new, 1))
    return path


def test_shipped_defaults_follow_the_spec():
    """The shipped file defines the spec's four profiles within 20k-150k tokens, weights
    summing to 1, the 75/90/100% alerts, and only assigns agents to defined profiles."""
    raw = tomllib.loads(default_config_path().read_text())
    cfg = default_config()
    assert set(cfg.profiles) == {"specialist-narrow", "specialist-broad", "role-coordinator",
                                 "role-architect"} == set(raw["profiles"])
    for name, p in cfg.profiles.items():
        assert 20_000 <= p.budget_tokens <= 150_000
        assert p.budget_tokens == raw["profiles"][name]["budget_tokens"]
        assert sum(p.weights.values()) == pytest.approx(1.0)
        assert set(p.weights) == {"global", "recent", "patterns"}
    budgets = [p.budget_tokens for p in cfg.profiles.values()]
    assert budgets == sorted(budgets), "profiles are ordered smallest first (bump order)"
    assert [s for _, s in cfg.alerts.levels()] == [0.75, 0.90, 1.00]
    assert set(cfg.agents.values()) <= set(cfg.profiles)
    assert cfg.next_up("specialist-narrow").name == "specialist-broad"
    assert cfg.next_up("role-architect") is None


def test_a_good_file_loads(tmp_path):
    """The template all bad cases derive from is itself valid (so each case tests one fault)."""
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.profile_for("bot").name == "small"
    assert cfg.profile_for("someone-else").name == "small"   # the default profile


@pytest.mark.parametrize("case, change, key", BAD, ids=[c[0] for c in BAD])
def test_each_bad_config_raises_one_error_naming_the_key(tmp_path, case, change, key):
    """Each kind of mistake raises BudgetConfigError (a ConfigError) whose field is the
    key, and whose one-line message names the file, the key and a fix."""
    path = _write(tmp_path, *change)
    with pytest.raises(BudgetConfigError) as info:
        load_config(path)
    e = info.value
    assert isinstance(e, ConfigError)
    assert e.field == key
    assert e.source == str(path)
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}: ")
    assert "; fix: " in msg and len(e.fix) > 5


@pytest.mark.parametrize("case, change, key", BAD, ids=[c[0] for c in BAD])
def test_each_bad_config_exits_2_with_one_line_from_the_cli(tmp_path, cli, case, change, key):
    """`compactor budgets check --config BAD` exits 2 and prints exactly one line, naming
    the key, and no traceback."""
    path = _write(tmp_path, *change)
    run = cli("budgets", "check", "--config", str(path))
    assert run.code == 2
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("compactor: error: ")
    assert f": {key}: " in lines[0] and "fix:" in lines[0]
    assert "Traceback" not in run.err


def test_the_real_process_prints_no_traceback(tmp_path):
    """Through the installed entry point (a subprocess), a bad report config also exits 2
    with one line on stderr."""
    path = _write(tmp_path, "budget_tokens = 20_000", "budget_tokens = -1")
    proc = subprocess.run([sys.executable, "-m", "compactor.cli", "budgets", "report",
                           "--config", str(path), "--ledger", str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "profiles.small.budget_tokens" in proc.stderr


def test_missing_file_and_missing_budget_are_named(tmp_path, cli):
    """A missing file names the file; a profile without budget_tokens names that key."""
    run = cli("budgets", "show", "--config", str(tmp_path / "nope.toml"))
    assert run.code == 2 and "nope.toml: (file): cannot read" in run.err
    path = _write(tmp_path, "budget_tokens = 20_000\n", "")
    with pytest.raises(BudgetConfigError) as info:
        load_config(path)
    assert info.value.field == "profiles.small.budget_tokens"


def test_check_and_show_accept_the_shipped_file(cli):
    """`budgets check` prints one OK line; `budgets show --json` lists budgets per level."""
    run = cli("budgets", "check")
    assert run.code == 0 and run.out.startswith("OK: ") and "4 profiles" in run.out
    import json

    shown = json.loads(cli("budgets", "show", "--json").out)
    narrow = shown["profiles"]["specialist-narrow"]
    assert narrow["by_complexity"] == {"simple": narrow["budget_tokens"] // 2,
                                       "medium": narrow["budget_tokens"],
                                       "complex": narrow["budget_tokens"] * 3 // 2,
                                       "multi-system": narrow["budget_tokens"] * 2}
