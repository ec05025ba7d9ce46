"""Where `[store] url` and `store.root` meet: the one from the later source wins (flag >
env > file), a URL stays a string everywhere a store is resolved (commands, maintenance),
and a folder stays a Path."""

from __future__ import annotations

from pathlib import Path

import pytest

from compactor import ConfigError
from compactor._config import load_config, resolve_store_root

URL = "postgresql://worker@db.internal:5432/agents?options=-csearch_path%3Dteam_a"


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "compactor.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_store_url_alone_is_the_store_as_a_string(tmp_path):
    """With only `[store] url`: store_root, resolve_store_root and the maintenance store
    are the URL itself (not a Path, which would fold `//`)."""
    cfg = load_config(_file(tmp_path, f'[store]\nurl = "{URL}"\n'), env={})
    assert cfg.store_root == URL and isinstance(cfg.store_root, str)
    assert resolve_store_root(None, cfg) == URL
    assert cfg.maintenance.store == URL and cfg.maintenance.store_url == URL


def test_a_url_flag_is_kept_as_the_string(tmp_path):
    """`resolve_store_root("postgresql://...")` (a --store flag) returns the URL unchanged;
    a folder flag is a Path."""
    assert resolve_store_root(URL, None) == URL
    assert resolve_store_root("some/dir", None) == Path("some/dir")


def test_maintenance_archive_of_a_url_store_comes_from_the_file(tmp_path):
    """A URL store has no `<store>/archive`: without `[maintenance] archive` asking for the
    archive root is a ConfigError naming `archive`; with it, that folder (relative to the
    file)."""
    bare = load_config(_file(tmp_path, f'[store]\nurl = "{URL}"\n'), env={})
    with pytest.raises(ConfigError) as e:
        _ = bare.maintenance.archive_root
    assert e.value.field == "archive"
    cfg = load_config(_file(tmp_path, f'[store]\nurl = "{URL}"\n[maintenance]\n'
                            'archive = "arch"\n'), env={})
    assert cfg.maintenance.archive_root == tmp_path / "arch"


def test_env_home_wins_over_a_file_url(tmp_path):
    """$COMPACTOR_HOME (env) is later than the file's url: the store is that folder, for
    commands and maintenance."""
    path = _file(tmp_path, f'[store]\nurl = "{URL}"\n')
    cfg = load_config(path, env={"COMPACTOR_HOME": "/srv/home"})
    assert cfg.store_root == Path("/srv/home")
    assert cfg.maintenance.store == Path("/srv/home")


def test_a_set_url_wins_over_a_file_root(tmp_path):
    """`--set store.url=...` (flag) is later than the file's root: the store is the URL."""
    path = _file(tmp_path, '[store]\nroot = "data"\n')
    cfg = load_config(path, overrides=[{"store": {"url": URL}}], env={})
    assert cfg.store_root == URL
    assert cfg.maintenance.store == URL
    assert cfg.settings["store.root"].value == str(tmp_path / "data")   # still shown


def test_maintenance_store_in_the_file_wins_over_store_url(tmp_path):
    """`[maintenance] store` (the more specific key) wins over `[store] url` for
    maintenance; the other commands use the url."""
    path = _file(tmp_path, f'[store]\nurl = "{URL}"\n[maintenance]\nstore = "m"\n')
    cfg = load_config(path, env={})
    assert cfg.maintenance.store == tmp_path / "m"
    assert cfg.store_root == URL
