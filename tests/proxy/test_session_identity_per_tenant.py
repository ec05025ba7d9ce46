"""Which session a proxied call belongs to: the ``x-compactor-session`` header, else the
system prompt and first user message; always scoped by a digest of the caller's
credentials, so two tenants never share a session (even with the same header or the
same prompt), and the credential itself appears nowhere in the id."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from proxy_agents import anthropic_agent, canonical, tool_model
from proxy_helpers import served
from compactor import HeuristicCounter, MessageCompactor, SessionStore
from compactor._format import Format
from compactor.proxy import session_id_for, tenant_of

KEY_A = "sk-ant-api03-tenantA-Qw3Er5Ty7Ui9Op1As"
KEY_B = "sk-ant-api03-tenantB-Zx2Cv4Bn6Mm8Kk0Ll"
BODY = {"system": "You are a travel agent.",
        "messages": [{"role": "user", "content": "Plan a trip"},
                     {"role": "assistant", "content": "Where to?"},
                     {"role": "user", "content": "Lisbon"}]}


def test_tenant_is_a_digest_of_the_credentials() -> None:
    """The tenant tag is the first 12 hex characters of sha256 over the credential
    headers (computed here from the documented recipe); no credential: ``nokey``."""
    expect = hashlib.sha256(f"x-api-key={KEY_A}".encode()).hexdigest()[:12]
    assert tenant_of({"x-api-key": KEY_A}) == expect
    assert tenant_of({"x-api-key": KEY_B}) != expect
    assert tenant_of({"authorization": f"Bearer {KEY_A}"}) != expect
    assert tenant_of({}) == "nokey"


def test_header_names_the_session_within_a_tenant() -> None:
    """``x-compactor-session: NAME`` gives ``NAME~TENANT``; the same name under another
    key is another session."""
    a = session_id_for({"x-api-key": KEY_A, "x-compactor-session": "build-42"}, BODY,
                       Format.ANTHROPIC)
    b = session_id_for({"x-api-key": KEY_B, "x-compactor-session": "build-42"}, BODY,
                       Format.ANTHROPIC)
    assert a == "build-42~" + tenant_of({"x-api-key": KEY_A})
    assert a != b and KEY_A not in a


def test_content_names_the_session_otherwise() -> None:
    """Without the header, the id follows the system prompt and first user message: later
    turns do not change it; another prompt, first message or key does."""
    h = {"x-api-key": KEY_A}
    first = session_id_for(h, BODY, Format.ANTHROPIC)
    longer = {**BODY, "messages": BODY["messages"] + [{"role": "assistant", "content": "ok"}]}
    assert session_id_for(h, longer, Format.ANTHROPIC) == first
    assert session_id_for(h, {**BODY, "system": "Other"}, Format.ANTHROPIC) != first
    other_first = {**BODY, "messages": [{"role": "user", "content": "Plan a hike"}]}
    assert session_id_for(h, other_first, Format.ANTHROPIC) != first
    assert session_id_for({"x-api-key": KEY_B}, BODY, Format.ANTHROPIC) != first
    assert first.startswith("auto-anthropic-")
    chat = {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]}
    chat2 = {"messages": [{"role": "system", "content": "sys2"}, {"role": "user", "content": "hi"}]}
    assert session_id_for(h, chat, Format.OPENAI) != session_id_for(h, chat2, Format.OPENAI)


def test_two_tenants_same_conversation_never_share(tmp_path: Path) -> None:
    """Two agents with the same prompts and the same session header but different keys,
    concurrently through one proxy, get two sessions, each restoring its own history."""
    from compactor.testing import LoopbackServer

    store = SessionStore(tmp_path / "store")
    compactor = MessageCompactor(window=2500, counter=HeuristicCounter(), store=store)
    hdr = {"x-compactor-session": "shared-name"}

    async def both(url: str) -> list:
        return await asyncio.gather(
            anthropic_agent(url, KEY_A, 7, 12, stream=False, headers=hdr),
            anthropic_agent(url, KEY_B, 7, 12, stream=True, headers=hdr, result_chars=700))

    with LoopbackServer(tool_model) as up, served(up.url, compactor=compactor) as proxy:
        runs = asyncio.run(both(proxy.url))
        assert up.violations == []
    ids = store.sessions()
    assert len(ids) == 2 and all(i.startswith("shared-name~") for i in ids)
    assert not any(k in i for i in ids for k in (KEY_A, KEY_B))
    restored = sorted(canonical(store.restore(sid)) for sid in ids)
    assert restored == sorted(canonical(run.history[:-2]) for run in runs)
    assert all(compactor.session(sid).compaction_count >= 1 for sid in ids)
