"""``compactor config show|check``: the one config file from the command line.

``add_config_commands(subparsers)`` adds the ``config`` command. ``show`` prints every
effective value and where it came from (``default``, ``file``, ``env``, ``flag``); ``check``
prints ``OK: FILE: ...`` (exit 0) or one line per problem on stderr (exit 2). Both take
``--config FILE`` (else ``$COMPACTOR_CONFIG``, else ``./compactor.toml``, else the shipped
defaults) and ``--set KEY=VALUE`` (repeatable; a value of ``[compactor]``, ``[windows]``,
``[store]`` or ``[ledger]`` that wins over the file and the environment).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._config import TABLES, Config, check_config, load_config, parse_override, shipped_path
from ._errors import ConfigError
from ._stores import is_store_url

_FOUND_BY = {"flag": "--config", "env": "$COMPACTOR_CONFIG", "cwd": "./compactor.toml",
             "default": "no file: the shipped defaults"}


def add_config_commands(sub: Any) -> argparse.ArgumentParser:
    """Add ``config`` (``show``, ``check``) to ``sub`` (what
    ``ArgumentParser.add_subparsers()`` returns). Returns the ``config`` parser."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "config", help="the compactor.toml file: show every effective value, check a file",
        description="One config file, compactor.toml, for the compactor, windows, budgets, "
                    "maintenance, store and ledger (docs/config.md).")
    csub = parser.add_subparsers(dest="config_command", metavar="{show,check}", required=True)

    def child(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = csub.add_parser(name, help=help_text,
                                                     description=help_text)
        p.add_argument("--config", metavar="FILE", default=None,
                       help="the config file (default: $COMPACTOR_CONFIG, else "
                            "./compactor.toml if present, else the shipped defaults)")
        p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                       dest="overrides", help="override one value, e.g. "
                       "compactor.high_watermark=0.8 (repeatable; [compactor], [windows], "
                       "[store] and [ledger] keys)")
        return p

    show = child("show", "print every effective value and where it came from "
                         "(default, file, env, flag)")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=cmd_show)
    check = child("check", "validate the config: one OK line (exit 0) or one line per "
                           "problem (exit 2)")
    check.set_defaults(func=cmd_check)
    return parser


def _order(key: str) -> int:
    head = key.split(".", 1)[0]
    return TABLES.index(head) if head in TABLES else len(TABLES)


def _shown(value: Any) -> Any:
    """A value as printed: a ``postgresql://`` URL without its password."""
    if isinstance(value, str) and is_store_url(value):
        from .maintenance._config import MaintenanceConfig
        return MaintenanceConfig(store=value).store_name
    return value


def _render(value: Any) -> str:
    if value is None:
        return "(unset)"
    return json.dumps(_shown(value), ensure_ascii=False)


def _describe(cfg: Config) -> str:
    if cfg.path is None:
        return f"{shipped_path()} ({_FOUND_BY['default']})"
    return f"{cfg.path} (from {_FOUND_BY[cfg.origin]})"


def cmd_show(args: argparse.Namespace) -> int:
    """Print every effective value: ``key = value  # source [origin]``, or ``--json``
    ``{"file", "found_by", "values": {key: {"value", "source", "from"}}}``."""
    overrides = [parse_override(o) for o in args.overrides]
    cfg = load_config(args.config, overrides=overrides)
    keys = sorted(cfg.settings, key=_order)  # stable: each table keeps its own order
    if args.json:
        print(json.dumps({"file": cfg.path, "found_by": cfg.origin,
                          "values": {k: {"value": _shown(cfg.settings[k].value),
                                         "source": cfg.settings[k].source,
                                         "from": cfg.settings[k].origin or None}
                                     for k in keys}}, indent=2, ensure_ascii=False))
        return 0
    lines = [(f"{k} = {_render(cfg.settings[k].value)}", cfg.settings[k]) for k in keys]
    width = min(56, max(len(text) for text, _ in lines))
    print(f"# config: {_describe(cfg)}")
    for text, s in lines:
        where = f" {s.origin}" if s.source in ("env", "flag") or (
            s.source == "file" and s.origin != cfg.path) else ""
        print(f"{text.ljust(width)}  # {s.source}{where}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``OK: FILE: ...`` and exit 0, or one line per problem on stderr and exit 2."""
    errors: list[ConfigError] = []
    overrides = []
    for text in args.overrides:
        try:
            overrides.append(parse_override(text))
        except ConfigError as e:
            errors.append(e)
    cfg, problems = check_config(args.config, overrides=overrides)
    errors += problems
    if errors or cfg is None:
        for e in errors:
            print(f"compactor: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for s in cfg.settings.values():
        counts[s.source] = counts.get(s.source, 0) + 1
    by_source = ", ".join(f"{n} {src}" for src, n in sorted(counts.items()))
    print(f"OK: {cfg.path or shipped_path()}: {len(cfg.settings)} values ({by_source}); "
          f"{len(cfg.budgets.profiles)} budget profiles, {len(cfg.budgets.agents)} agents; "
          f"store {cfg.store_name or '(none)'}, ledger {cfg.ledger_path or '(none)'}")
    return 0
