"""A budgets config path that is empty, a folder or not UTF-8 is one clear error (never
silently the shipped defaults, never a traceback)."""

from __future__ import annotations

import pytest

from compactor import ConfigError
from compactor.budgets import default_config, load_config
from compactor.budgets._config import CONFIG_ENV, resolve_config


def test_empty_config_path_is_an_error_not_the_shipped_file(tmp_path, cli, monkeypatch):
    """`--config ""` (an unset shell variable) is an error naming (file), not a silent
    fallback to the shipped profiles; an empty $COMPACTOR_BUDGETS means unset."""
    run = cli("budgets", "check", "--config", "")
    assert run.code == 2 and "(file)" in run.err and "empty" in run.err
    monkeypatch.setenv(CONFIG_ENV, "")
    assert resolve_config().source == default_config().source


def test_a_directory_as_config_is_one_line(tmp_path, cli):
    """--config naming a directory: exit 2, one line naming (file)."""
    run = cli("budgets", "check", "--config", str(tmp_path))
    assert run.code == 2 and run.err.count("\n") == 1 and ": (file): " in run.err


def test_non_utf8_config_is_one_line(tmp_path):
    """A file that is not UTF-8 raises BudgetConfigError naming (file)."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[settings]\ndefault_profile = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "(file)" and "UTF-8" in str(info.value)
