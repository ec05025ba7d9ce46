"""The Ledger writer: records on disk, file modes, rotation, fsync policy, failures."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import stat
import time
from datetime import datetime, timezone

import pytest

from compactor._errors import ConfigError
from compactor._sink import LedgerSink
from compactor.ledger import (
    Ledger,
    LedgerError,
    LedgerFieldError,
    _ledger,
    read_records,
    verify,
)
from compactor.ledger._segments import next_segment


def lines_of(path):
    return path.read_bytes().splitlines(keepends=True)


def test_ledger_is_a_ledger_sink(tmp_path):
    """Ledger satisfies the one-method LedgerSink protocol."""
    with Ledger(tmp_path / "ledger.jsonl") as led:
        assert isinstance(led, LedgerSink)


def test_each_emit_appends_one_complete_line(tmp_path, clock):
    """Each emit appends exactly one newline-terminated JSON record with the common keys."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, clock=clock, fsync="never") as led:
        led.emit("compaction", {"tokens_before": 900, "tokens_after": 300, "agent_id": "a1"})
        led.emit("usage", {"session_id": "s1", "input_tokens": 12})
    lines = lines_of(path)
    assert len(lines) == 2 and all(line.endswith(b"\n") for line in lines)
    first = json.loads(lines[0])
    assert first == {"schema_version": 1, "ts": "2025-01-31T23:00:00.000Z", "event": "compaction",
                     "session_id": None, "agent_id": "a1", "tokens_after": 300,
                     "tokens_before": 900}
    assert [r["event"] for r in read_records(path)] == ["compaction", "usage"]


def test_emit_returns_after_the_write(tmp_path):
    """A record is on disk (readable by another descriptor) as soon as emit returns."""
    path = tmp_path / "ledger.jsonl"
    led = Ledger(path, fsync="never")
    for i in range(5):
        led.emit("usage", {"i": i})
        assert len(lines_of(path)) == i + 1
    led.close()


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o277])
def test_files_are_created_0600_whatever_the_umask(tmp_path, umask):
    """The active segment, closed .gz segments and lock files are mode 0600 under any umask."""
    path = tmp_path / "ledger.jsonl"
    old = os.umask(umask)
    try:
        with Ledger(path, rotate_bytes=200, fsync="never") as led:
            for i in range(10):
                led.emit("usage", {"i": i, "pad": "x" * 50})
    finally:
        os.umask(old)
    files = [p for p in tmp_path.iterdir()]
    assert any(p.name.endswith(".jsonl.gz") for p in files)
    assert {p.name for p in files} >= {"ledger.jsonl", "ledger.jsonl.lock", "ledger.jsonl.gz.lock"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name


def test_missing_directory_is_created_private(tmp_path):
    """A missing ledger directory is created with mode 0700."""
    old = os.umask(0)
    try:
        Ledger(tmp_path / "deep" / "ledger.jsonl").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "deep").stat().st_mode) == 0o700


def test_bad_field_raises_and_writes_nothing(tmp_path):
    """A non-serialisable field raises LedgerFieldError naming it, and the file is left byte-for-byte unchanged."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as led:
        led.emit("usage", {"ok": 1})
        before = path.read_bytes()
        with pytest.raises(LedgerFieldError) as err:
            led.emit("usage", {"ok": 2, "when": datetime.now(timezone.utc)})
        assert err.value.field == "when"
        assert path.read_bytes() == before
        led.emit("usage", {"ok": 3})
    assert [r["ok"] for r in read_records(path)] == [1, 3]


@pytest.mark.parametrize("kwargs, field", [
    ({"fsync": "sometimes"}, "fsync"),
    ({"fsync_interval_s": 0}, "fsync_interval_s"),
    ({"rotate_bytes": 0}, "rotate_bytes"),
    ({"rotate_bytes": 1.5}, "rotate_bytes"),
])
def test_bad_arguments_raise_config_error(tmp_path, kwargs, field):
    """Out-of-range constructor arguments raise ConfigError naming the argument."""
    with pytest.raises(ConfigError) as err:
        Ledger(tmp_path / "ledger.jsonl", **kwargs)
    assert err.value.field == field


def test_emit_after_close_raises(tmp_path):
    """emit on a closed ledger raises LedgerError; close is idempotent."""
    led = Ledger(tmp_path / "ledger.jsonl")
    led.close()
    led.close()
    with pytest.raises(LedgerError):
        led.emit("usage", {})


def test_size_rotation_closes_gzipped_segments_in_order(tmp_path, clock):
    """Past rotate_bytes the active segment is renamed <stem>.<day>-<seq>.jsonl, gzipped, and read back in order."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, rotate_bytes=500, clock=clock, fsync="never") as led:
        for i in range(40):
            led.emit("usage", {"i": i})
    names = sorted(p.name for p in tmp_path.glob("ledger.*.jsonl*"))
    assert names[0] == "ledger.20250131-0001.jsonl.gz"
    assert all(n.endswith(".jsonl.gz") for n in names) and len(names) >= 5
    for p in tmp_path.glob("*.gz"):
        assert len(gzip.decompress(p.read_bytes())) <= 500
    assert path.stat().st_size <= 500
    assert [r["i"] for r in read_records(path)] == list(range(40))


def test_a_record_larger_than_rotate_bytes_gets_its_own_segment(tmp_path):
    """A single record longer than rotate_bytes is written whole, alone in its segment."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, rotate_bytes=100, fsync="never") as led:
        led.emit("usage", {"i": 0})
        led.emit("usage", {"i": 1, "big": "y" * 300})
        led.emit("usage", {"i": 2})
    assert [r["i"] for r in read_records(path)] == [0, 1, 2]
    assert len(list(tmp_path.glob("*.gz"))) == 2


def test_daily_rotation_follows_the_utc_day_of_the_first_record(tmp_path, clock):
    """A record from a later UTC day closes the segment, named after the day of its first record."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, clock=clock, fsync="never") as led:
        led.emit("usage", {"i": 0})                    # 2025-01-31 23:00
        clock.now = clock.now.replace(minute=59, second=59, microsecond=999000)
        led.emit("usage", {"i": 1})                    # 2025-01-31 23:59:59.999
        clock.advance(milliseconds=1)
        led.emit("usage", {"i": 2})                    # 2025-02-01 00:00:00.000 -> rotate
        clock.advance(hours=5)
        led.emit("usage", {"i": 3})
        clock.advance(days=1)
        led.emit("usage", {"i": 4})                    # 2025-02-02 -> rotate
    names = sorted(p.name for p in tmp_path.glob("ledger.*.jsonl.gz"))
    assert names == ["ledger.20250131-0001.jsonl.gz", "ledger.20250201-0001.jsonl.gz"]
    first = gzip.decompress((tmp_path / names[0]).read_bytes()).splitlines()
    assert [json.loads(x)["i"] for x in first] == [0, 1]
    assert [r["i"] for r in read_records(path)] == [0, 1, 2, 3, 4]


def test_daily_rotation_can_be_turned_off(tmp_path, clock):
    """With rotate_daily=False a new day does not close the segment."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, clock=clock, rotate_daily=False) as led:
        led.emit("usage", {"i": 0})
        clock.advance(days=3)
        led.emit("usage", {"i": 1})
    assert not list(tmp_path.glob("*.gz")) and len(lines_of(path)) == 2


def test_daily_rotation_is_seen_by_a_new_process(tmp_path, clock):
    """A fresh Ledger on an existing file learns the segment's day from its first record and rotates on a new day."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, clock=clock) as led:
        led.emit("usage", {"i": 0})
    clock.advance(days=1)
    with Ledger(path, clock=clock) as led:
        led.emit("usage", {"i": 1})
    assert [p.name for p in tmp_path.glob("*.gz")] == ["ledger.20250131-0001.jsonl.gz"]


def test_segment_names_never_go_backwards():
    """The next segment name sorts after every existing one, even when the clock went back."""
    assert next_segment([], "20250101") == ("20250101", 1)
    assert next_segment([("20250101", 1), ("20250101", 2)], "20250101") == ("20250101", 3)
    assert next_segment([("20250101", 3)], "20250102") == ("20250102", 1)
    assert next_segment([("20250105", 2)], "20250101") == ("20250105", 3)


def test_a_writer_notices_another_writer_rotated_the_file(tmp_path):
    """A ledger whose descriptor points at a rotated-away file reopens the path before writing, leaving the closed segment untouched."""
    path = tmp_path / "ledger.jsonl"
    a = Ledger(path, fsync="never")
    b = Ledger(path, fsync="never", rotate_bytes=150)
    a.emit("usage", {"who": "a", "i": 0})
    b.emit("usage", {"who": "b", "i": 1, "pad": "z" * 80})   # rotates: a's file is now closed
    closed = sorted(tmp_path.glob("*.gz"))
    assert len(closed) == 1
    frozen = closed[0].read_bytes()
    a.emit("usage", {"who": "a", "i": 2})
    a.close()
    b.close()
    assert closed[0].read_bytes() == frozen
    assert [r["i"] for r in read_records(path)] == [0, 1, 2]
    assert [json.loads(x)["i"] for x in lines_of(path)] == [1, 2]


def test_a_torn_tail_left_by_a_crash_is_cut_before_the_next_append(tmp_path):
    """The next writer cuts a torn last line back to the last complete record and notes it in a maintenance record."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as led:
        led.emit("usage", {"i": 0})
    good = path.read_bytes()
    torn = b'{"schema_version":1,"ts":"2025-'
    with open(path, "ab") as f:
        f.write(torn)
    with Ledger(path) as led:
        led.emit("usage", {"i": 1})
    records = read_records(path)
    out = list(records)
    assert records.report.clean
    assert path.read_bytes().startswith(good)
    assert [r["event"] for r in out] == ["usage", "maintenance", "usage"]
    note = out[1]
    assert note["action"] == "truncate_torn_tail" and note["offset"] == len(good)
    assert note["length"] == len(torn) and note["sha256"] == hashlib.sha256(torn).hexdigest()


def test_a_failed_write_is_cut_back_and_raises(tmp_path, monkeypatch):
    """When the file system fails mid-line, the partial line is removed and emit raises LedgerError."""
    path = tmp_path / "ledger.jsonl"
    led = Ledger(path, fsync="never")
    led.emit("usage", {"i": 0})
    before = path.read_bytes()

    def half_then_enospc(fd, data):
        if len(data) > 10:
            return os.write(fd, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_ledger, "_write", half_then_enospc)
    with pytest.raises(LedgerError, match="No space"):
        led.emit("usage", {"i": 1})
    assert path.read_bytes() == before
    monkeypatch.undo()
    led.emit("usage", {"i": 2})
    led.close()
    assert verify(path).ok


def _count_syncs(monkeypatch):
    calls = []
    real = _ledger._fdatasync
    monkeypatch.setattr(_ledger, "_fdatasync", lambda fd: (calls.append(fd), real(fd)))
    return calls


def test_fsync_always_syncs_every_record(tmp_path, monkeypatch):
    """fsync='always' syncs once per emit before it returns."""
    calls = _count_syncs(monkeypatch)
    with Ledger(tmp_path / "l.jsonl", fsync="always") as led:
        for i in range(5):
            led.emit("usage", {"i": i})
            assert len(calls) == i + 1


def test_fsync_never_never_syncs_records(tmp_path, monkeypatch):
    """fsync='never' leaves flushing to the kernel, even on close."""
    calls = _count_syncs(monkeypatch)
    with Ledger(tmp_path / "l.jsonl", fsync="never") as led:
        for i in range(5):
            led.emit("usage", {"i": i})
    assert calls == []


def test_fsync_interval_syncs_at_most_once_per_interval_and_on_close(tmp_path, monkeypatch):
    """fsync='interval' syncs a burst at most once per interval, and on close."""
    calls = _count_syncs(monkeypatch)
    led = Ledger(tmp_path / "l.jsonl", fsync="interval", fsync_interval_s=30)
    for i in range(100):
        led.emit("usage", {"i": i})
    assert calls == []
    led.close()
    assert len(calls) == 1


def test_fsync_interval_timer_syncs_a_ledger_left_dirty(tmp_path, monkeypatch):
    """Under fsync='interval' a background timer syncs the last records within about one interval, without another emit."""
    calls = _count_syncs(monkeypatch)
    led = Ledger(tmp_path / "l.jsonl", fsync="interval", fsync_interval_s=0.05)
    led.emit("usage", {"i": 0})
    led.emit("usage", {"i": 1})
    deadline = time.monotonic() + 2
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) >= 1
    n = len(calls)
    led.close()
    assert len(calls) == n  # nothing dirty left to sync on close


def test_secrets_never_reach_the_files(tmp_path, all_bytes):
    """No file of the ledger (plain or decompressed gzip) contains a fake API key, a Bearer token or an Authorization header."""
    path = tmp_path / "ledger.jsonl"
    key = "sk-ant-test-0123456789abcdefXYZ"
    with Ledger(path, rotate_bytes=300, fsync="never") as led:
        for i in range(6):
            led.emit("summarizer_retry", {
                "i": i, "api_key": key,
                "request": {"headers": {"Authorization": f"Bearer {key}", "x-api-key": key}},
                "error": f"401 from provider: invalid x-api-key: {key}; "
                         "Authorization: Bearer tok123456789",
                "messages": [{"role": "user", "content": f"my key is {key}"}],
            })
    data = all_bytes(tmp_path)
    assert list(tmp_path.glob("*.gz")), "rotation should have produced gzip segments"
    assert b"sk-ant-test" not in data
    assert b'"authorization"' not in data.lower()  # the header key is dropped with its value
    assert b"Authorization: Bearer [REDACTED]" in data  # in the error text, only the value is masked
    assert b"tok123456789" not in data
    assert len(list(read_records(path))) == 6


def test_redact_mode_writes_digests_not_content(tmp_path, all_bytes):
    """With redact=True the text of summaries, prompts and messages never reaches the files."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, redact=True) as led:
        led.emit("compaction", {"summary": "CONFIDENTIAL-SUMMARY", "prompt": "SECRET-PROMPT",
                                "removed": [{"content": "PRIVATE-TOOL-OUTPUT"}],
                                "tokens_before": 10, "tokens_after": 4})
    data = all_bytes(tmp_path)
    for text in [b"CONFIDENTIAL-SUMMARY", b"SECRET-PROMPT", b"PRIVATE-TOOL-OUTPUT"]:
        assert text not in data
    (rec,) = list(read_records(path))
    assert rec["summary"]["chars"] == len("CONFIDENTIAL-SUMMARY")
    digest = hashlib.sha256(b"PRIVATE-TOOL-OUTPUT").hexdigest()
    assert rec["removed"][0]["content"]["sha256"] == digest
    assert rec["tokens_before"] == 10


def test_a_forked_child_appends_through_its_own_descriptors(tmp_path):
    """After fork, parent and child each append whole records to the same ledger."""
    path = tmp_path / "ledger.jsonl"
    led = Ledger(path, fsync="never", rotate_bytes=400)
    led.emit("usage", {"who": "parent", "i": 0})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            for i in range(20):
                led.emit("usage", {"who": "child", "i": i})
            led.close()
        finally:
            os._exit(0)
    for i in range(1, 21):
        led.emit("usage", {"who": "parent", "i": i})
    os.waitpid(pid, 0)
    led.close()
    records = read_records(path)
    got = [(r["who"], r["i"]) for r in records]
    assert records.report.clean
    want = [("parent", i) for i in range(21)] + [("child", i) for i in range(20)]
    assert sorted(got) == sorted(want)
