"""The PostgreSQL store's schema is versioned: migrations apply once each, in order, even
when many workers open the store at once; `compactor store migrate` applies them on
demand; a schema newer than the code, or an old one with migrate=False, is a one-line
error naming the fix; a missing extra or an unreachable server is one line too."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from compactor import ConfigError
from compactor._optional import MissingExtraError
from compactor._pgstore import MIGRATIONS, SCHEMA_VERSION, PostgresStore
from compactor._store_cli import add_store_commands

ROOT = Path(__file__).resolve().parents[2]


def versions(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT version FROM compactor_schema_migrations ORDER BY version")]


def run_cli(*argv: str) -> int:
    """``compactor store ...`` through the sub-command this package registers."""
    parser = argparse.ArgumentParser(prog="compactor")
    add_store_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_many_stores_opening_at_once_apply_each_migration_once(pg_url):
    """8 stores opened at once on an empty schema all succeed and the schema holds each
    migration exactly once."""
    errors, stores = [], []

    def open_one() -> None:
        try:
            stores.append(PostgresStore(pg_url))
        except Exception as e:  # noqa: BLE001 -- collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert errors == []
    assert versions(pg_url) == [v for v, _, _ in MIGRATIONS]


def test_store_migrate_command_applies_up_to_a_version_then_the_rest(pg_url, capsys):
    """`store migrate --to 1` applies only the first migration; `store migrate` the rest;
    a third run applies nothing."""
    assert run_cli("store", "migrate", "--store", pg_url, "--to", "1") == 0
    assert versions(pg_url) == [1]
    assert "applied migration(s) 1; schema version 1" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="compactor store migrate"):
        PostgresStore(pg_url, migrate=False)          # an old schema, not migrated
    assert run_cli("store", "migrate", "--store", pg_url) == 0
    assert versions(pg_url) == list(range(1, SCHEMA_VERSION + 1))
    assert run_cli("store", "migrate", "--store", pg_url) == 0
    assert f"schema version {SCHEMA_VERSION}, up to date" in capsys.readouterr().out.splitlines()[-1]
    PostgresStore(pg_url, migrate=False).close()


def test_a_schema_newer_than_the_code_is_refused(pg_url):
    """A database migrated by a newer compactor (a version this code does not know) is a
    ConfigError naming both versions and the fix, on open and in `store migrate`."""
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO compactor_schema_migrations (version, name) VALUES (99, 'x')")
    with pytest.raises(ConfigError, match=r"schema version 99 is newer .*fix: upgrade"):
        PostgresStore(pg_url)
    with pytest.raises(ConfigError, match="newer"):
        run_cli("store", "migrate", "--store", pg_url)


def test_unreachable_server_is_one_line_without_the_password():
    """A URL no server answers is a ConfigError on one line, naming the URL with its
    password masked and the fix."""
    with pytest.raises(ConfigError) as e:
        PostgresStore("postgresql://me:s3cret@127.0.0.1:1/db", connect_timeout_s=2)
    text = str(e.value)
    assert "\n" not in text and "s3cret" not in text
    assert "postgresql://me:***@127.0.0.1:1/db: cannot connect" in text and "fix:" in text


def test_postgres_url_without_the_extra_names_the_extra(tmp_path):
    """open_store on a postgresql:// URL where psycopg is not installed raises the one-line
    MissingExtraError naming the postgres extra (a folder still opens)."""
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from compactor._stores import open_store\n"
        "print(type(open_store(sys.argv[1])).__name__)\n"
        "try:\n    open_store('postgresql://u@127.0.0.1/db')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "files")],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = out.stdout.splitlines()
    assert lines[0] == "FileSessionStore"
    assert lines[1].startswith(MissingExtraError.__name__)
    assert "pip install 'agent-context-compactor[postgres]'" in lines[1]


def test_store_migrate_without_the_extra_is_one_line_exit_2(tmp_path):
    """`compactor store migrate --store postgresql://...` where psycopg is not installed
    exits 2 with one stderr line naming the postgres extra, and no traceback."""
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from compactor.cli import main\n"
            "sys.exit(main(['store', 'migrate', '--store', 'postgresql://u@127.0.0.1/db']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "compactor: error: a postgresql:// store needs psycopg, which is not installed; fix: "
        "pip install 'agent-context-compactor[postgres]'"]
