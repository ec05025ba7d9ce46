"""`[store] url = "postgresql://..."` in compactor.toml selects the PostgreSQL store for
`MessageCompactor.from_config` and for the commands that read the config (`replay`,
`sessions`), with no --store flag."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from builders import anthropic_session
from compactor import MessageCompactor
from compactor._pgstore import PostgresStore
from maint_pg import child_argv, child_env
from pg_support import canon

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``compactor ARGS`` as a real subprocess in ``cwd`` (no COMPACTOR_* variables)."""
    return subprocess.run(child_argv(list(args)), cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=100)


def write_config(folder: Path, url: str, extra: str = "") -> Path:
    path = folder / "compactor.toml"
    path.write_text(f'[compactor]\ncounter = "heuristic"\n\n[store]\nurl = "{url}"\n{extra}',
                    encoding="utf-8")
    return path


async def test_from_config_builds_a_postgres_store_that_keeps_what_was_sent(pg_url, tmp_path):
    """from_config on a file with `[store] url` gives a compactor whose store is a
    PostgresStore; what it archives restores from a separate PostgresStore on that URL,
    and no folder is created."""
    path = write_config(tmp_path, pg_url)
    comp = MessageCompactor.from_config(path, window=1500)
    try:
        assert isinstance(comp.store, PostgresStore)
        history = anthropic_session(12)
        r = await comp.compact_if_needed(json.loads(json.dumps(history)), session_id="cfg/1")
        assert r.compacted      # the window forces one, so the state is saved too
    finally:
        comp.store.close()
    with PostgresStore(pg_url) as store:
        assert store.sessions() == ["cfg/1"]
        assert canon(store.restore("cfg/1")) == canon(history)
        assert store.load_state("cfg/1")["compaction_count"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compactor.toml"]


def test_replay_and_sessions_restore_take_the_store_from_the_config(pg_url, tmp_path):
    """With ./compactor.toml holding `[store] url`, `compactor replay FILE` (no --store)
    archives into PostgreSQL and `compactor sessions restore ID` (no --store) prints the
    conversation back."""
    write_config(tmp_path, pg_url)
    convs = [{"id": f"cfg/conv {k}", "messages": anthropic_session(6 + 2 * k)} for k in range(2)]
    (tmp_path / "convs.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    run = cli("replay", "convs.jsonl", "--window", "2000", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["compactions"] >= 2
    with PostgresStore(pg_url) as store:
        assert store.sessions() == sorted(c["id"] for c in convs)
    for c in convs:
        got = cli("sessions", "restore", c["id"], cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert canon(json.loads(got.stdout)) == canon(c["messages"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compactor.toml", "convs.jsonl"]
