"""After `maintain --run` moved a session to the archive, `compactor sessions restore ID`
still gives its full history (from the archive, hash-verified), the same bytes as
`compactor archive restore ID`; `--out` files are written 0600 (a history can hold
secrets)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from cli_support import assert_one_line_error, compactor, good_conversation, write_jsonl

#: Far after the replay: every session is old enough for maintenance to archive it.
LATER = "2035-01-01T00:00:00Z"


def _archived_site(tmp_path, sid="sess-1"):
    conv = good_conversation(sid, turns=4)
    write_jsonl(tmp_path / "c.jsonl", [conv])
    run = compactor("replay", "c.jsonl", "--window", "4000", "--counter", "heuristic",
                    "--store", "store", "--ledger", "ledger.jsonl", cwd=tmp_path)
    assert run.code == 0, run.err
    run = compactor("maintain", "--run", "--store", "store", "--ledger", "ledger.jsonl",
                    "--now", LATER, cwd=tmp_path)
    assert run.code == 0, run.out + run.err
    listed = compactor("sessions", "--store", "store", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.out) == []   # the live store no longer holds it
    return conv


@pytest.mark.parametrize("sid", ["sess-1", "team/sess-2"])
def test_sessions_restore_finds_an_archived_session(tmp_path, sid):
    """sessions restore ID after maintenance archived it: exit 0 and the messages the test
    wrote, the same as archive restore ID (also for an id with a '/', like the demo's)."""
    conv = _archived_site(tmp_path, sid)
    run = compactor("sessions", "--store", "store", "restore", sid, cwd=tmp_path)
    assert run.code == 0, run.err
    assert json.loads(run.out) == conv["messages"]
    other = compactor("archive", "restore", sid, "--store", "store", cwd=tmp_path)
    assert other.code == 0 and other.out == run.out


def test_restored_files_are_0600(tmp_path):
    """--out of sessions restore (live and archived) and of archive restore: mode 0600,
    even when the file existed with 0644 before."""
    conv = good_conversation("live-1")
    write_jsonl(tmp_path / "live.jsonl", [conv])
    assert compactor("replay", "live.jsonl", "--window", "4000", "--counter", "heuristic",
                     "--store", "live", cwd=tmp_path).code == 0
    _archived_site(tmp_path)
    (tmp_path / "old.json").write_text("[]")
    os.chmod(tmp_path / "old.json", 0o644)
    runs = {
        "live.json": ["sessions", "--store", "live", "restore", "live-1", "--out", "live.json"],
        "arch.json": ["sessions", "--store", "store", "restore", "sess-1", "--out", "arch.json"],
        "a2.json": ["archive", "restore", "sess-1", "--store", "store", "--out", "a2.json"],
        "old.json": ["sessions", "--store", "live", "restore", "live-1", "--out", "old.json"],
    }
    for name, argv in runs.items():
        run = compactor(*argv, cwd=tmp_path)
        assert run.code == 0, run.err
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert json.loads((tmp_path / "old.json").read_text()) == conv["messages"]


def test_unknown_id_names_both_places(tmp_path):
    """An id neither live nor archived: one line naming the store and both list commands."""
    _archived_site(tmp_path)
    run = compactor("sessions", "--store", "store", "restore", "nope", cwd=tmp_path)
    assert_one_line_error(run, "'nope'", "compactor sessions list", "compactor archive list")


def test_show_points_to_the_archive(tmp_path):
    """sessions show ID of an archived session: one line that names `compactor archive
    show ID`."""
    _archived_site(tmp_path)
    run = compactor("sessions", "--store", "store", "show", "sess-1", cwd=tmp_path)
    assert_one_line_error(run, "compactor archive show sess-1")
