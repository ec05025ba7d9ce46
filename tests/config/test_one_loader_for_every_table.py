"""One loader: a single compactor.toml feeds the budgets and maintenance loaders too, the
old budgets-only layout still loads, the shipped defaults file says what the code does,
and every error is a ConfigError naming the key and the file."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest

from compactor import ConfigError, MessageCompactor, PlanConfig, SessionStore
from compactor import budgets, maintenance
from compactor._config import KEYS, check_config, load_config, shipped_path
from compactor.ledger import Ledger

from config_samples import FULL, variant, write

OLD_BUDGETS = """\
[settings]
default_profile = "solo"
[profiles.solo]
budget_tokens = 30_000
weights = { recent = 1.0 }
[agents]
bot = "solo"
"""


def test_budgets_and_maintenance_read_the_same_file(tmp_path):
    """The budgets and maintenance loaders take their tables from one compactor.toml
    (which the budgets loader used to reject), and maintenance uses [store]/[ledger]."""
    path = write(tmp_path)
    b = budgets.load_config(path)
    assert list(b.profiles) == ["small", "large"] and b.enforcement == "hard"
    assert b.profile_for("bot").budget_tokens == 90_000
    m = maintenance.load_config(path)
    assert (m.tiers.full_days, m.tiers.key_points_days, m.ledger_rotate_mb) == (3, 20, 32)
    assert m.health.no_compaction_level == "critical"
    assert m.store == tmp_path / "data" / "store"
    assert m.ledger == tmp_path / "data" / "ledger" / "ledger.jsonl"
    assert m.source == str(path)


def test_budgets_cli_checks_the_unified_file(tmp_path, compactor_cli):
    """`compactor budgets check --config compactor.toml` reads its [budgets] table."""
    path = write(tmp_path)
    run = compactor_cli("budgets", "check", "--config", str(path))
    assert run.code == 0, run.err
    assert "2 profiles, 1 agents, enforcement hard" in run.out


def test_the_old_budgets_layout_still_loads(tmp_path):
    """A file holding only the old top-level budgets tables is read as [budgets]; its
    errors name the keys as written (no budgets. prefix)."""
    path = write(tmp_path, OLD_BUDGETS, name="budgets.toml")
    cfg = load_config(path)
    assert list(cfg.budgets.profiles) == ["solo"]
    assert cfg.plan == PlanConfig()                             # everything else: defaults
    bad = write(tmp_path, OLD_BUDGETS.replace('bot = "solo"', 'bot = "sol"'), name="b2.toml")
    with pytest.raises(ConfigError) as info:
        budgets.load_config(bad)
    assert info.value.field == "agents.bot"


def test_budgets_env_variable_still_names_the_budgets(tmp_path, monkeypatch):
    """$COMPACTOR_BUDGETS, when no path is given, is where the budgets come from (and it
    wins over ./compactor.toml's [budgets])."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPACTOR_CONFIG", raising=False)
    write(tmp_path)                                            # ./compactor.toml: small, large
    old = write(tmp_path, OLD_BUDGETS, name="budgets.toml")
    monkeypatch.setenv("COMPACTOR_BUDGETS", str(old))
    assert list(budgets.resolve_config().profiles) == ["solo"]
    cfg = load_config()
    assert cfg.settings["budgets.agents.bot"].source == "env"
    assert cfg.plan.keep_recent == 6                           # the rest from ./compactor.toml


def test_shipped_file_says_what_the_code_does(tmp_path):
    """Loading the shipped compactor.toml gives the same values as an empty file; its
    [budgets] equal the shipped budgets.toml and its [maintenance] the built-in defaults."""
    empty = write(tmp_path, "")
    shipped = load_config(shipped_path())
    assert {k: s.value for k, s in shipped.settings.items()} == \
        {k: s.value for k, s in load_config(empty).settings.items()}
    raw = tomllib.loads(shipped_path().read_text())
    from_shipped = budgets.parse_config(raw["budgets"], prefix="budgets")
    legacy = budgets.default_config()
    assert (from_shipped.profiles, from_shipped.agents, from_shipped.default_profile,
            from_shipped.alerts, from_shipped.recommendations) == (
        legacy.profiles, legacy.agents, legacy.default_profile, legacy.alerts,
        legacy.recommendations)
    m = maintenance.parse_config(raw)
    d = maintenance.MaintenanceConfig()
    assert (m.tiers, m.importance, m.retention, m.health, m.counter, m.ledger_rotate_mb) == (
        d.tiers, d.importance, d.retention, d.health, d.counter, d.ledger_rotate_mb)


def test_key_defaults_match_the_constructors():
    """The defaults the loader reports for MessageCompactor, SessionStore and Ledger
    arguments are those constructors' own defaults."""
    ctor = {"compactor": MessageCompactor, "store": SessionStore, "ledger": Ledger}
    names = {"compactor": {"max_concurrency": "max_concurrency", "summarize": "summarize",
                           "reserve_output_tokens": "reserve_output_tokens",
                           "window": "window", "agent_id": "agent_id",
                           "max_sessions": "max_sessions"},
             "store": {"fsync": "fsync"},
             "ledger": {k: k for k in ("fsync", "fsync_interval_s", "rotate_bytes",
                                       "rotate_daily", "redact", "lock")}}
    checked = 0
    for key in KEYS:
        arg = names.get(key.table, {}).get(key.name)
        if arg is None:
            continue
        param = inspect.signature(ctor[key.table]).parameters[arg]
        assert key.default == param.default, (key.table, key.name)
        checked += 1
    assert checked == 13


def test_errors_carry_key_and_file_and_all_problems_are_listed(tmp_path):
    """load_config raises the first problem as a ConfigError (field = dotted key, source =
    file); check_config lists every independent one."""
    path = write(tmp_path, variant("keep_recent = 6", "keep_recent = -1").replace(
        'default_tier = "fast"', 'default_tier = "fastest"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.field, info.value.source) == ("compactor.keep_recent", str(path))
    assert str(info.value).startswith(f"{path}: compactor.keep_recent: must be >= 0, got -1; "
                                      "fix: ")
    cfg, errors = check_config(path)
    assert cfg is None
    assert [e.field for e in errors] == ["compactor.keep_recent", "windows.default_tier"]
    assert "did you mean 'fast'?" in str(errors[1])


def test_a_relative_path_in_the_environment_is_relative_to_the_working_directory(tmp_path,
                                                                                 monkeypatch):
    """$COMPACTOR_HOME is taken as given (the caller's folder), a path in the file relative
    to the file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", '[store]\nroot = "s"\n')
    cfg = load_config(path, env={"COMPACTOR_HOME": "h"})
    assert cfg.store_root == Path("h")
    cfg = load_config(path, env={})
    assert cfg.store_root == tmp_path / "sub" / "s"


def test_a_rule_across_keys_names_the_file_that_broke_it(tmp_path):
    """Only high_watermark = 0.3 in the file: the default low_watermark is no longer below
    it; the error names the file, the default it broke and a low_watermark that would fit."""
    low = PlanConfig().low_watermark
    assert low >= 0.3                                # the premise: 0.3 breaks the default
    path = write(tmp_path, "[compactor]\nhigh_watermark = 0.3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.field, info.value.source) == ("compactor.low_watermark", str(path))
    assert f"got {low:g}" in str(info.value) and "e.g. 0.17" in str(info.value)


def test_a_misspelt_table_beside_old_budgets_tables_is_one_problem(tmp_path):
    """[compactr] in an old-layout budgets file: one 'unknown table' problem suggesting
    [compactor], not a second one from the budgets loader."""
    path = write(tmp_path, "[compactr]\nkeep_recent = 1\n" + OLD_BUDGETS)
    cfg, errors = check_config(path)
    assert cfg is None and [e.field for e in errors] == ["compactr"]
    assert "did you mean 'compactor'?" in str(errors[0])


def test_commands_resolve_store_and_ledger_flag_then_config_then_default(tmp_path):
    """--store/--ledger win; else [store] root / [ledger] path (env included); else the
    ./compactor-data and ./compactor-ledger/ledger.jsonl defaults."""
    from compactor._config import resolve_ledger_path, resolve_store_root

    path = write(tmp_path)
    assert resolve_store_root("flag-dir", path) == Path("flag-dir")
    assert resolve_store_root(None, path) == tmp_path / "data" / "store"
    assert resolve_ledger_path(None, path) == tmp_path / "data" / "ledger" / "ledger.jsonl"
    bare = load_config(write(tmp_path, "", name="empty.toml"), env={})
    assert resolve_store_root(None, bare) == Path("compactor-data")
    assert resolve_ledger_path(None, bare) == Path("compactor-ledger/ledger.jsonl")
    env = load_config(write(tmp_path, "", name="empty.toml"), env={"COMPACTOR_LEDGER": "l.jsonl"})
    assert resolve_ledger_path(None, env) == Path("l.jsonl")


def test_the_old_layout_tables_are_the_budgets_tables():
    """The tables that mark a file as old-layout budgets are exactly those the budgets
    loader accepts."""
    from compactor._config import LEGACY_BUDGET_TABLES
    from compactor.budgets._config import _TABLES

    assert LEGACY_BUDGET_TABLES == _TABLES
