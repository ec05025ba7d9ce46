"""What the store and the ledger promise to make durable is fsynced: every fsync is
observed (``os.fsync`` / ``os.fdatasync`` wrapped, each call's file named from
``/proc/self/fd``) while the real code writes real files."""

import asyncio
import os
from pathlib import Path

import pytest

from compactor import HeuristicCounter, MessageCompactor, SessionStore
from compactor.ledger import Ledger, _ledger

from builders import anthropic_session


class _Syncs:
    """Records ``(path, size)`` of the file behind each fsync/fdatasync call."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[str, int]] = []
        real_fsync, real_fdatasync = os.fsync, getattr(os, "fdatasync", os.fsync)

        def wrap(real):
            def sync(fd):
                path = os.readlink(f"/proc/self/fd/{fd}")
                self.calls.append((path, os.fstat(fd).st_size))
                return real(fd)
            return sync
        monkeypatch.setattr(os, "fsync", wrap(real_fsync))
        monkeypatch.setattr(os, "fdatasync", wrap(real_fdatasync))
        monkeypatch.setattr(_ledger, "_fdatasync", wrap(real_fdatasync))

    def of(self, path: Path) -> list[int]:
        """The file sizes seen by the syncs of ``path``."""
        return [size for p, size in self.calls if p == str(path)]

    def under(self, folder: Path) -> list[str]:
        return [p for p, _ in self.calls if p.startswith(str(folder) + os.sep)]


@pytest.mark.parametrize("fsync", [True, False])
def test_store_fsyncs_archive_appends_when_asked_and_state_always(tmp_path, monkeypatch, fsync):
    """With fsync=True every archive append is fsynced (the synced file holds the new
    lines), with fsync=False none is; either way the session state is fsynced before it
    replaces state.json."""
    syncs = _Syncs(monkeypatch)
    store = SessionStore(tmp_path / "store", fsync=fsync)
    comp = MessageCompactor(counter=HeuristicCounter(), window=3000, store=store)
    r = asyncio.run(comp.compact_if_needed(anthropic_session(40), session_id="s1"))
    assert r.compacted
    archives = sorted((tmp_path / "store").rglob("archive.jsonl"))
    states = sorted((tmp_path / "store").rglob("state.json"))
    assert len(archives) == 1 and len(states) == 1
    session_dir = archives[0].parent
    archive_syncs = syncs.of(archives[0])
    if fsync:
        assert archive_syncs and max(archive_syncs) == archives[0].stat().st_size
    else:
        assert archive_syncs == []
    # state: a temp file beside state.json is synced before it replaces state.json
    state_syncs = [p for p in syncs.under(session_dir)
                   if Path(p).parent == session_dir and "state" in Path(p).name]
    assert state_syncs, syncs.calls


@pytest.mark.parametrize("policy, expect", [("always", "each"), ("never", "none"),
                                            ("interval", "close")])
def test_ledger_fsyncs_by_its_policy(tmp_path, monkeypatch, policy, expect):
    """fsync="always": one sync per emit, each seeing that record on disk; "never": no
    sync of the ledger file; "interval" (60 s): none while emitting, one at close."""
    syncs = _Syncs(monkeypatch)
    path = tmp_path / "ledger" / "ledger.jsonl"
    led = Ledger(path, fsync=policy, fsync_interval_s=60)
    sizes = []
    for k in range(5):
        led.emit("usage", {"agent_id": "a", "seq": k})
        sizes.append(path.stat().st_size)
    during = list(syncs.of(path))
    led.close()
    after = syncs.of(path)[len(during):]
    if expect == "each":
        assert during == sizes
    elif expect == "none":
        assert during == [] and after == []
    else:
        assert len(during) <= 1 and after == [sizes[-1]]
