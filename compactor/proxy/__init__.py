"""``compactor proxy``: compaction for any agent, with no code change.

A local HTTP proxy that speaks the Anthropic Messages API and OpenAI chat completions:
agents that accept a base URL (``ANTHROPIC_BASE_URL``, ``OPENAI_BASE_URL``) send their
calls through it, and each history is compacted (pair-safe, archived losslessly, recorded
in the ledger) before it goes to the real upstream. See ``docs/proxy.md``.

    proxy = Proxy(ProxySettings(anthropic_upstream="https://api.anthropic.com"),
                  compactor=MessageCompactor.from_config())
    with ProxyServer(proxy, "127.0.0.1", 8787):
        ...   # ANTHROPIC_BASE_URL=http://127.0.0.1:8787

Needs the ``proxy`` extra (starlette, uvicorn), imported when a proxy is built. The CLI
wiring lives in ``compactor.proxy._cli.add_proxy_commands``.
"""

from ._app import (DEFAULT_ANTHROPIC_UPSTREAM, DEFAULT_MAX_BODY_BYTES, DEFAULT_OPENAI_UPSTREAM,
                   Proxy, ProxySettings)
from ._identity import (AGENT_HEADER, SESSION_HEADER, TOKEN_HEADER, agent_for, session_id_for,
                        tenant_of)
from ._server import ProxyServer, check_bind, is_loopback, parse_listen
from ._summarizer import UpstreamSummarizer

__all__ = [
    "AGENT_HEADER",
    "DEFAULT_ANTHROPIC_UPSTREAM",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_OPENAI_UPSTREAM",
    "SESSION_HEADER",
    "TOKEN_HEADER",
    "Proxy",
    "ProxyServer",
    "ProxySettings",
    "UpstreamSummarizer",
    "agent_for",
    "check_bind",
    "is_loopback",
    "parse_listen",
    "session_id_for",
    "tenant_of",
]
