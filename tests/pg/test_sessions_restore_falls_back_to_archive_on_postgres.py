"""`compactor sessions restore ID` on a PostgreSQL store falls back to the maintenance
archive (`[maintenance] archive`) once maintenance has moved the session out of the
database, and prints the history that was sent."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from builders import anthropic_session
from compactor._pgstore import PostgresStore
from maint_pg import child_argv, child_env
from pg_support import canon

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``compactor ARGS`` as a real subprocess in ``cwd`` (no COMPACTOR_* variables)."""
    return subprocess.run(child_argv(list(args)), cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=100)


def test_restore_of_an_archived_session_reads_the_maintenance_archive(pg_url, tmp_path):
    """Replay into PostgreSQL through `[store] url`, `maintain --run --archive DIR` at a
    date 400 days later (every session archived, none left in the database), then
    `sessions restore ID --store URL` and `sessions restore ID` (store from the config)
    print each conversation as it was sent, saying it came from the archive."""
    archive = tmp_path / "archive"
    (tmp_path / "compactor.toml").write_text(
        f'[compactor]\ncounter = "heuristic"\n\n[store]\nurl = "{pg_url}"\n\n'
        '[maintenance]\narchive = "archive"\n', encoding="utf-8")
    convs = [{"id": f"team/old {k}", "messages": anthropic_session(6 + 2 * k)}
             for k in range(2)]
    (tmp_path / "convs.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    run = cli("replay", "convs.jsonl", "--window", "2000", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr

    later = (datetime.now(timezone.utc) + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = cli("maintain", "--run", "--json", "--archive", str(archive), "--ledger",
              str(tmp_path / "ledger.jsonl"), "--now", later, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    with PostgresStore(pg_url) as store:
        assert store.sessions() == []          # all moved out of the database

    for c in convs:
        for store_args in (["--store", pg_url], []):
            got = cli("sessions", "restore", c["id"], *store_args, cwd=tmp_path)
            assert got.returncode == 0, got.stderr
            assert canon(json.loads(got.stdout)) == canon(c["messages"])
        out = tmp_path / "restored.json"
        got = cli("sessions", "restore", c["id"], "--out", str(out), cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        # the entry named is a file under [maintenance] archive (relative to ./compactor.toml)
        named = got.stdout.split("(from the archive ", 1)[1].split(", hash verified)")[0]
        assert (tmp_path / named).resolve().parent.parent.parent == archive.resolve()
        assert canon(json.loads(out.read_text())) == canon(c["messages"])
