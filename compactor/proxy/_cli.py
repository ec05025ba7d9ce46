"""``compactor proxy``: run the compacting proxy, or read a running one's status.

``add_proxy_commands(subparsers)`` adds the ``proxy`` command. Serving needs the ``proxy``
extra (starlette, uvicorn), imported only when the command runs; ``--status`` needs only
httpx.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

import httpx

from .._errors import CompactorError, ConfigError
from .._format import Format
from .._optional import require

#: The environment variable that may hold the shared token (keeps it out of ``ps``).
TOKEN_ENV = "COMPACTOR_PROXY_TOKEN"


class ProxyUnreachableError(CompactorError):
    """``--status``: no proxy answered at the address."""


def add_proxy_commands(sub: Any) -> argparse.ArgumentParser:
    """Add ``proxy`` to ``sub`` (what ``ArgumentParser.add_subparsers()`` returns).
    Returns the ``proxy`` parser."""
    from ._app import DEFAULT_ANTHROPIC_UPSTREAM, DEFAULT_OPENAI_UPSTREAM
    from ._server import DEFAULT_GRACEFUL_TIMEOUT_S

    p: argparse.ArgumentParser = sub.add_parser(
        "proxy", help="a local proxy that compacts the history of any agent (Claude Code, "
        "Codex CLI, OpenAI-compatible clients) before it reaches the provider",
        description="Serve the Anthropic Messages API (/v1/messages) and OpenAI chat "
        "completions (/v1/chat/completions), compacting each history before forwarding it "
        "to the upstream; answers are relayed as the upstream sends them. Point an agent at "
        "it with ANTHROPIC_BASE_URL=http://127.0.0.1:8787 or "
        "OPENAI_BASE_URL=http://127.0.0.1:8787/v1 (docs/proxy.md).")
    p.add_argument("--listen", default="127.0.0.1:8787", metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:8787; loopback only unless "
                        "--allow-remote)")
    p.add_argument("--anthropic-upstream", default=DEFAULT_ANTHROPIC_UPSTREAM, metavar="URL",
                   help=f"the Messages API base URL, without /v1 (default "
                        f"{DEFAULT_ANTHROPIC_UPSTREAM}); 'none' refuses Anthropic calls")
    p.add_argument("--openai-upstream", default=DEFAULT_OPENAI_UPSTREAM, metavar="URL",
                   help=f"the chat completions base URL, with /v1 (default "
                        f"{DEFAULT_OPENAI_UPSTREAM}); 'none' refuses OpenAI calls")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="compactor.toml (default: $COMPACTOR_CONFIG, ./compactor.toml, the "
                        "shipped defaults)")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="the session store (default: [store] root, else ./compactor-data)")
    p.add_argument("--ledger", default=None, metavar="FILE",
                   help="the ledger (default: [ledger] path, else "
                        "./compactor-ledger/ledger.jsonl)")
    p.add_argument("--shadow", action="store_true",
                   help="forward every request unchanged; record in the ledger what "
                        "compaction would have done (proxy_shadow records)")
    p.add_argument("--allow-remote", action="store_true",
                   help="permit a non-loopback --listen address (needs --token)")
    p.add_argument("--token", default=None, metavar="T",
                   help=f"shared token callers send as x-compactor-token (or ${TOKEN_ENV})")
    p.add_argument("--summarizer", choices=("offline", "upstream"), default="offline",
                   help="offline (default): the local summarizer; upstream: the caller's "
                        "upstream with the caller's credentials and a cheap model")
    p.add_argument("--summary-model", action="append", default=[], metavar="FORMAT=MODEL",
                   help="the upstream summary model, e.g. anthropic=claude-haiku-4-5 or "
                        "openai=gpt-4o-mini (repeatable)")
    p.add_argument("--agent", default=None, metavar="NAME",
                   help="the agent of calls without an x-compactor-agent header")
    p.add_argument("--budgets", action="store_true",
                   help="apply the [budgets] profiles per agent (alerts in the ledger)")
    p.add_argument("--max-body-mb", type=float, default=32.0, metavar="MB",
                   help="largest request body, MiB (default 32; larger: HTTP 413)")
    p.add_argument("--graceful-timeout", type=float, default=DEFAULT_GRACEFUL_TIMEOUT_S,
                   metavar="SECONDS", help="how long a shutdown waits for requests in "
                   "flight (default %(default)s)")
    p.add_argument("--status", action="store_true",
                   help="print the status of the proxy at --listen and exit")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="with --status: refresh every SECONDS until Ctrl-C")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    p.set_defaults(func=cmd_proxy)
    return p


def _upstream(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() == "none" else value


def _models(items: list[str]) -> dict[Format, str] | None:
    if not items:
        return None
    from ._summarizer import DEFAULT_SUMMARY_MODELS

    out = dict(DEFAULT_SUMMARY_MODELS)
    for item in items:
        fmt, sep, model = item.partition("=")
        try:
            f = Format(fmt.strip().lower())
        except ValueError:
            f = None
        if not sep or f is None or not model.strip():
            raise ConfigError(f"--summary-model {item!r} is not FORMAT=MODEL; fix: e.g. "
                              "anthropic=claude-haiku-4-5 or openai=gpt-4o-mini",
                              field="summary_model")
        out[f] = model.strip()
    return out


def cmd_proxy(args: argparse.Namespace) -> int:
    """``compactor proxy``: serve until SIGINT/SIGTERM (exit 0 after a graceful
    shutdown), or with ``--status`` print the running proxy's status."""
    from ._server import parse_listen

    host, port = parse_listen(args.listen)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.status:
        return _status(host, port, token, as_json=args.json, watch=args.watch)
    return _serve(args, host, port, token)


def _serve(args: argparse.Namespace, host: str, port: int, token: str | None) -> int:
    from .._config import (DEFAULT_LEDGER_PATH, DEFAULT_STORE_ROOT, compactor_from_config,
                           load_config)
    from ._app import Proxy, ProxySettings
    from ._server import ProxyServer, check_bind

    check_bind(host, allow_remote=args.allow_remote, token=token)
    for module in ("starlette", "uvicorn"):     # before anything is created on disk
        require(module, extra="proxy", what="compactor proxy")
    if not args.max_body_mb > 0:
        raise ConfigError("--max-body-mb must be > 0; fix: e.g. 32", field="max_body_mb")
    settings = ProxySettings(
        anthropic_upstream=_upstream(args.anthropic_upstream),
        openai_upstream=_upstream(args.openai_upstream), shadow=args.shadow, token=token,
        max_body_bytes=max(1024, int(args.max_body_mb * 1024 * 1024)),
        summarizer=args.summarizer, summary_models=_models(args.summary_model),
        default_agent=args.agent, budgets=args.budgets)
    overrides: list[dict[str, Any]] = []
    if args.store:
        overrides.append({"store": {"root": str(args.store)}})
    if args.ledger:
        overrides.append({"ledger": {"path": str(args.ledger)}})
    cfg = load_config(args.config, overrides=overrides)
    fill: list[dict[str, Any]] = []
    if cfg.store_root is None:
        fill.append({"store": {"root": str(DEFAULT_STORE_ROOT)}})
    if cfg.ledger_path is None:
        fill.append({"ledger": {"path": str(DEFAULT_LEDGER_PATH)}})
    if fill:
        cfg = load_config(args.config, overrides=overrides + fill)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="compactor proxy: %(levelname)s %(name)s: %(message)s")
    compactor = compactor_from_config(cfg)
    ledger = compactor.sink
    try:
        proxy = Proxy(settings, compactor=compactor, sink=ledger, budget_config=cfg.budgets)
        server = ProxyServer(proxy, host, port, allow_remote=args.allow_remote,
                             graceful_timeout_s=args.graceful_timeout)
        ups = ", ".join(f"{n} -> {u}" for n, u in (("anthropic", settings.anthropic_upstream),
                                                   ("openai", settings.openai_upstream)) if u)
        print(f"compactor proxy: listening on {server.url} ({ups}; store {cfg.store_name}; "
              f"ledger {cfg.ledger_path}{'; shadow' if args.shadow else ''})", flush=True)
        server.serve()
        print("compactor proxy: stopped", flush=True)
    finally:
        # the ledger, and the store's connection pool (a PostgreSQL store)
        for closable in (ledger, getattr(compactor, "store", None)):
            close = getattr(closable, "close", None)
            if close is not None:
                close()
    return 0


def _status(host: str, port: int, token: str | None, *, as_json: bool,
            watch: float | None) -> int:
    from ._app import STATUS
    from ._server import DEFAULT_HOST

    h = DEFAULT_HOST if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + h + ']' if ':' in h else h}:{port}{STATUS}"
    headers = {"x-compactor-token": token} if token else {}

    def fetch() -> dict[str, Any]:
        try:
            r = httpx.get(url, headers=headers, timeout=5.0, trust_env=False)
        except httpx.HTTPError as e:
            raise ProxyUnreachableError(f"no proxy answers at {url} ({type(e).__name__}); "
                                        "fix: start it with `compactor proxy`, or pass its "
                                        "--listen address") from None
        if r.status_code == 401:
            raise ConfigError(f"{url}: the proxy wants its token; fix: pass --token T or set "
                              f"${TOKEN_ENV}", field="token")
        if r.status_code != 200:
            raise ProxyUnreachableError(f"{url} answered HTTP {r.status_code}; fix: check "
                                        "that --listen names a compactor proxy")
        return r.json()

    if watch is None:
        doc = fetch()
        if as_json:
            import json
            print(json.dumps(doc, indent=2))
        else:
            from rich.console import Console
            Console().print(_table(doc))
        return 0
    if not watch > 0:
        raise ConfigError("--watch must be > 0 seconds; fix: e.g. 2", field="watch")
    from rich.console import Console
    from rich.live import Live

    with Live(_table(fetch()), console=Console(), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(watch)
                live.update(_table(fetch()), refresh=True)
        except KeyboardInterrupt:
            return 0


def _table(doc: dict[str, Any]) -> Any:
    """A rich table of a status document: one row per session, the totals in the title."""
    from rich.table import Table

    t = doc.get("totals", {})
    title = (f"compactor proxy{' (shadow)' if doc.get('shadow') else ''}: "
             f"{t.get('sessions', 0)} sessions, {doc.get('requests', 0)} requests, "
             f"{t.get('compactions', 0)} compactions, {doc.get('in_flight', 0)} in flight, "
             f"{doc.get('fallbacks', 0)} fallbacks, {doc.get('upstream_errors', 0)} upstream "
             f"errors, {doc.get('broken_streams', 0)} broken streams")
    table = Table(title=title)
    for col in ("session", "agent", "format", "calls", "compactions",
                "would compact" if doc.get("shadow") else "fallbacks",
                "tokens in (last)", "tokens sent (last)", "input tokens", "output tokens",
                "idle s"):
        table.add_column(col, overflow="fold")
    for s in doc.get("sessions", []):
        table.add_row(s["session_id"], s.get("agent_id") or "-", s["format"], str(s["calls"]),
                      str(s["compactions"]),
                      str(s["would_compact"] if doc.get("shadow") else s["fallbacks"]),
                      str(s["tokens_before"]), str(s["tokens_sent"]), str(s["input_tokens"]),
                      str(s["output_tokens"]), f"{s['idle_s']:.0f}")
    return table


__all__ = ["TOKEN_ENV", "ProxyUnreachableError", "add_proxy_commands", "cmd_proxy"]
