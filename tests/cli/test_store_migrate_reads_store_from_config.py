"""`compactor store migrate` without --store reads the store from the config ([store] url
or root), and with neither says so in one line (exit 2)."""

from __future__ import annotations

from pathlib import Path

from cli_support import compactor


def test_without_store_the_config_root_is_used(tmp_path: Path):
    """A ./compactor.toml with [store] root: migrate names that folder (no schema)."""
    (tmp_path / "compactor.toml").write_text('[store]\nroot = "sessions-here"\n')
    r = compactor("store", "migrate", "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    assert '"kind": "folder"' in r.out and "sessions-here" in r.out


def test_without_store_the_config_url_is_used(tmp_path: Path):
    """A config (given with --config) with [store] url: migrate tries that server (here
    none listens on the port: one line naming the URL, the password hidden)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nurl = "postgresql://agent:s3cret@127.0.0.1:9/fleet"\n')
    r = compactor("store", "migrate", "--config", cfg, cwd=tmp_path)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:9/fleet" in lines[0] and "s3cret" not in r.err
    assert "Traceback" not in r.err


def test_without_store_or_config_it_is_one_line(tmp_path: Path):
    """No --store and no store in the config: exit 2, one line naming both fixes."""
    r = compactor("store", "migrate", cwd=tmp_path)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "--store" in lines[0] and "[store] url" in lines[0]
