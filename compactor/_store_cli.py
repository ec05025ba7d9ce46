"""``compactor store migrate``: bring a PostgreSQL session store's schema up to date.

``add_store_commands(subparsers)`` adds the ``store`` command. ``migrate --store
postgresql://...`` (default: the config's ``[store] url``) applies the schema migrations
the database lacks (each once, in order, even with several callers at once) and prints
the schema version; a folder store has no schema, so it prints that nothing needs
migrating. psycopg is imported only when
the command runs on a URL (the ``postgres`` extra).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._errors import ConfigError
from ._optional import require
from ._stores import is_store_url


def add_store_commands(sub: Any) -> argparse.ArgumentParser:
    """Add ``store`` (``migrate``) to ``sub`` (what ``ArgumentParser.add_subparsers()``
    returns). Returns the ``store`` parser."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "store", help="the session store: apply PostgreSQL schema migrations",
        description="The session store (docs/postgres.md).")
    ssub = parser.add_subparsers(dest="store_command", metavar="{migrate}", required=True)
    mig = ssub.add_parser("migrate", help="apply the schema migrations a postgresql:// store "
                          "lacks, then print its schema version",
                          description="Apply the schema migrations a postgresql:// store "
                          "lacks (each once, in order), then print its schema version.")
    mig.add_argument("--store", default=None, metavar="URL",
                     help="postgresql://USER@HOST:PORT/DBNAME (a folder store needs no "
                          "migration); default: [store] url of the config")
    mig.add_argument("--config", help="compactor.toml to read (default: $COMPACTOR_CONFIG, "
                     "else ./compactor.toml, else the shipped defaults)")
    mig.add_argument("--schema", default=None,
                     help="the tables' schema (it must exist; default: the URL's "
                          "search_path, normally public)")
    mig.add_argument("--to", type=int, default=None, metavar="VERSION",
                     help="apply migrations up to this version only")
    mig.add_argument("--json", action="store_true", help="print one JSON object")
    mig.set_defaults(func=cmd_migrate)
    return parser


def cmd_migrate(args: argparse.Namespace) -> int:
    """``store migrate``: exit 0 when the schema is at the version asked (or the store
    is a folder); a one-line error (exit 2) when the server cannot be reached or holds a
    newer schema."""
    spec = args.store
    if spec is None:
        from ._config import load_config

        root = load_config(args.config).store_root
        if root is None:
            raise ConfigError("store migrate needs a store: no --store and no [store] url in "
                              "the config; fix: --store postgresql://USER@HOST:PORT/DBNAME, "
                              "or set [store] url in compactor.toml", field="store")
        spec = str(root)
    if not is_store_url(spec):
        out = {"store": spec, "kind": "folder", "applied": [], "schema_version": None}
        print(json.dumps(out) if args.json else
              f"{spec}: a folder store has no schema; nothing to migrate")
        return 0
    require("psycopg", extra="postgres", what="a postgresql:// store")
    require("psycopg_pool", extra="postgres", what="a postgresql:// store")
    from ._pgstore import SCHEMA_VERSION, display_url, migrate_url

    if args.to is not None and not 1 <= args.to <= SCHEMA_VERSION:
        raise ConfigError(f"--to {args.to}: no such schema version; fix: a version from 1 "
                          f"to {SCHEMA_VERSION}", field="to")
    applied, version = migrate_url(spec, schema=args.schema, target=args.to)
    where = display_url(spec)
    if args.json:
        print(json.dumps({"store": where, "kind": "postgresql", "applied": applied,
                          "schema_version": version}))
    elif applied:
        print(f"{where}: applied migration(s) {', '.join(map(str, applied))}; "
              f"schema version {version}")
    else:
        print(f"{where}: schema version {version}, up to date")
    return 0


__all__ = ["add_store_commands", "cmd_migrate"]
