"""`compactor replay FILE --store postgresql://...` then `compactor sessions restore ID
--store postgresql://...` gives the input back; so does the same flow through the
library's open_store (what the CLI wiring calls)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from builders import anthropic_session
from compactor import HeuristicCounter, MessageCompactor
from compactor._pgstore import PostgresStore
from compactor._replay import load_conversations, replay
from compactor._stores import open_store
from pg_support import canon

ROOT = Path(__file__).resolve().parents[2]


def conversations(path: Path) -> list[dict]:
    convs = [{"id": f"team/conv {k}", "messages": anthropic_session(6 + 2 * k)}
             for k in range(3)]
    path.write_text("".join(json.dumps(c) + "\n" for c in convs))
    return convs


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COMPACTOR_HOME", "COMPACTOR_CONFIG")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "compactor", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=100)


async def test_replay_through_open_store_restores_the_input(pg_url, tmp_path):
    """Replaying a conversation file into open_store(URL) and restoring each id from a new
    open_store(URL) gives each conversation's messages back, with compactions on the way."""
    convs = conversations(tmp_path / "convs.jsonl")
    store = open_store(pg_url)
    try:
        comp = MessageCompactor(counter=HeuristicCounter(), store=store, agent_id="replay")
        stats = await replay(load_conversations(tmp_path / "convs.jsonl"), comp, window=2000)
    finally:
        store.close()
    assert stats.compactions >= 3 and stats.invalid_histories == 0
    with open_store(pg_url) as again:
        assert again.sessions() == sorted(c["id"] for c in convs)
        for c in convs:
            assert canon(again.restore(c["id"])) == canon(c["messages"])


def test_cli_replay_then_sessions_restore_gives_the_input_back(pg_url, tmp_path):
    """The real CLI: replay into a postgresql:// store, then sessions restore each id from
    it, prints the conversation's messages; the sessions are in PostgreSQL (no folder named
    after the URL appears)."""
    convs = conversations(tmp_path / "convs.jsonl")
    run = cli("replay", "convs.jsonl", "--store", pg_url, "--window", "2000", "--counter",
              "heuristic", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["invalid_histories"] == 0
    with PostgresStore(pg_url) as store:
        assert store.sessions() == sorted(c["id"] for c in convs)
    for c in convs:
        got = cli("sessions", "restore", c["id"], "--store", pg_url, cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert canon(json.loads(got.stdout)) == canon(c["messages"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convs.jsonl"]


def test_cli_store_migrate_brings_a_new_database_to_the_schema(pg_url, tmp_path):
    """The real CLI: `compactor store migrate --store URL --json` on an empty schema applies
    every migration and reports the version."""
    from compactor._pgstore import SCHEMA_VERSION

    run = cli("store", "migrate", "--store", pg_url, "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["applied"] == list(range(1, SCHEMA_VERSION + 1))
    assert out["schema_version"] == SCHEMA_VERSION
