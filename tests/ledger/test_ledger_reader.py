"""Reading and verifying a ledger: segment order, gzip, torn and invalid lines, repairs."""

from __future__ import annotations

import gzip
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactor._errors import ConfigError
from compactor.ledger import Ledger, follow_records, read_records, tail_records, verify


def make_ledger(path: Path, n: int, *, rotate_bytes: int = 10**9, clock=None) -> None:
    with Ledger(path, rotate_bytes=rotate_bytes, fsync="never", clock=clock) as led:
        for i in range(n):
            led.emit("usage", {"i": i})


def ids(records) -> list[int]:
    return [r["i"] for r in records]


def test_a_missing_ledger_reads_as_empty(tmp_path):
    """Reading a ledger that does not exist yields nothing and reports nothing."""
    records = read_records(tmp_path / "nope" / "ledger.jsonl")
    assert list(records) == [] and records.report.clean and records.report.files == []


def test_a_torn_last_line_is_skipped_and_reported(tmp_path):
    """A final line without a newline is skipped and reported with its file, byte offset and length."""
    path = tmp_path / "ledger.jsonl"
    make_ledger(path, 3)
    size = path.stat().st_size
    partial = b'{"schema_version":1,"ts":"20'
    with open(path, "ab") as f:
        f.write(partial)
    records = read_records(path)
    assert ids(records) == [0, 1, 2]
    (torn,) = records.report.torn
    assert (torn.file, torn.offset, torn.length) == (str(path), size, len(partial))
    assert torn.at_tail and torn.reason == "no_newline" and torn.kind == "torn"


def test_a_read_sees_the_ledger_as_of_the_call(tmp_path):
    """Records appended after read_records is called are not part of that read."""
    path = tmp_path / "ledger.jsonl"
    make_ledger(path, 2)
    records = read_records(path)
    with Ledger(path) as led:
        led.emit("usage", {"i": 99})
    assert ids(records) == [0, 1] and records.report.clean


def test_a_torn_line_in_the_middle_is_reported_not_deleted(tmp_path):
    """A broken line between complete ones is reported (not at the tail) and verify --repair leaves it in place."""
    path = tmp_path / "ledger.jsonl"
    make_ledger(path, 2)
    data = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(data[0] + b'{"broken\n' + data[1])
    records = read_records(path)
    assert ids(records) == [0, 1]
    (bad,) = records.report.torn
    assert not bad.at_tail and bad.reason == "bad_json" and bad.offset == len(data[0])
    report = verify(path, repair=True)
    assert not report.ok and report.unrepaired == (bad,) and report.repairs == ()
    assert b'{"broken\n' in path.read_bytes()


def test_invalid_lines_are_reported(tmp_path):
    """JSON lines that are not ledger records are skipped and reported as invalid."""
    path = tmp_path / "ledger.jsonl"
    make_ledger(path, 1)
    with open(path, "ab") as f:
        f.write(b'{"hello":"world"}\n[]\n')
    records = read_records(path)
    assert ids(records) == [0]
    assert [b.reason for b in records.report.invalid] == ["missing_keys", "not_object"]
    assert not verify(path).ok


def test_verify_repair_cuts_a_torn_tail_and_keeps_every_complete_record(tmp_path):
    """verify(repair=True) truncates a torn last line to the last complete record; a second verify is clean."""
    path = tmp_path / "ledger.jsonl"
    make_ledger(path, 5)
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"schema_version":1,"ts":"2025-01-01T00:00:00.000Z","ev')
    first = verify(path)
    assert not first.ok and len(first.torn) == 1 and first.repairs == ()
    repaired = verify(path, repair=True)
    assert repaired.ok and repaired.repairs[0].action == "truncate_torn_tail"
    assert repaired.repairs[0].offset == len(good)
    assert path.read_bytes() == good
    again = verify(path)
    assert again.ok and again.torn == () and again.records == 5


def _rotated(tmp_path: Path, n: int = 30) -> Path:
    path = tmp_path / "ledger.jsonl"
    make_ledger(path, n, rotate_bytes=400)
    return path


def test_a_segment_present_both_plain_and_gzipped_is_read_once(tmp_path):
    """After a crash between gzip rename and unlink, the plain file is read and the .gz ignored; repair finishes the step."""
    path = _rotated(tmp_path)
    gz = sorted(tmp_path.glob("*.jsonl.gz"))[1]
    plain = gz.with_name(gz.name[:-3])
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    records = read_records(path)
    assert ids(records) == list(range(30))
    assert str(plain) in records.report.files and str(gz) not in records.report.files
    report = verify(path, repair=True)
    assert report.ok and str(plain) in report.pending
    assert any(r.action == "finish_gzip" and r.file == str(plain) for r in report.repairs)
    assert not plain.exists() and gz.exists()
    assert ids(read_records(path)) == list(range(30))


def test_a_leftover_temp_file_is_ignored_and_removed_by_repair(tmp_path):
    """A half-written .gz.tmp from a crash is never read, and verify --repair deletes it."""
    path = _rotated(tmp_path)
    gz = sorted(tmp_path.glob("*.jsonl.gz"))[0]
    plain = gz.with_name(gz.name[:-3])
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    tmp = tmp_path / f".{plain.name}.gz.tmp"
    tmp.write_bytes(gz.read_bytes()[:10] if gz.exists() else b"\x1f\x8b partial")
    assert ids(read_records(path)) == list(range(30))
    report = verify(path, repair=True)
    assert report.ok and not tmp.exists() and not plain.exists() and gz.exists()
    assert {r.action for r in report.repairs} == {"remove_temp", "finish_gzip"}
    assert ids(read_records(path)) == list(range(30))


def test_a_torn_tail_in_a_closed_plain_segment_is_repaired(tmp_path):
    """verify --repair also cuts a torn last line off a closed segment that is still plain."""
    path = _rotated(tmp_path)
    gz = sorted(tmp_path.glob("*.jsonl.gz"))[0]
    plain = gz.with_name(gz.name[:-3])
    content = gzip.decompress(gz.read_bytes())
    plain.write_bytes(content + b'{"schema_vers')
    gz.unlink()
    records = read_records(path)
    assert ids(records) == list(range(30))
    assert [(b.file, b.at_tail) for b in records.report.torn] == [(str(plain), True)]
    report = verify(path, repair=True)
    assert report.ok
    assert gzip.decompress(gz.read_bytes()) == content


def test_a_cut_gzip_segment_keeps_its_complete_records(tmp_path):
    """A truncated .gz segment yields the records before the cut and reports the rest as torn."""
    path = _rotated(tmp_path)
    gz = sorted(tmp_path.glob("*.jsonl.gz"))[0]
    n_first = len(gzip.decompress(gz.read_bytes()).splitlines())
    gz.write_bytes(gz.read_bytes()[:-12])
    records = read_records(path)
    got = ids(records)
    assert got[-1] == 29 and len(got) >= 30 - n_first
    assert any(b.reason == "gzip_truncated" for b in records.report.torn)
    assert not verify(path).ok


def test_since_filters_records_and_skips_old_segments(tmp_path, clock):
    """read_records(since=...) yields only records at or after since, across day-rotated segments."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, clock=clock) as led:
        for i in range(6):
            led.emit("usage", {"i": i})
            clock.advance(days=1)
    since = datetime(2025, 2, 3, 0, 0, tzinfo=timezone.utc)
    records = read_records(path, since=since)
    assert ids(records) == [3, 4, 5]
    assert len(records.report.files) < 6  # old segments were not opened
    with pytest.raises(ConfigError):
        read_records(path, since=datetime(2025, 1, 1))


def test_tail_records_returns_the_last_n_across_segments(tmp_path):
    """tail_records returns the last n records oldest first, optionally of one event, reading across segments."""
    path = tmp_path / "ledger.jsonl"
    with Ledger(path, rotate_bytes=300, fsync="never") as led:
        for i in range(40):
            led.emit("compaction" if i % 3 == 0 else "usage", {"i": i})
    assert ids(tail_records(path, 5)) == [35, 36, 37, 38, 39]
    assert ids(tail_records(path, 4, event="compaction")) == [27, 30, 33, 36, 39][-4:]
    assert ids(tail_records(path, 1000)) == list(range(40))
    assert tail_records(path, 0) == []


def test_follow_records_sees_new_records_across_rotations(tmp_path):
    """follow_records yields every record appended after it starts, in order, even when several rotations happen between polls."""
    path = tmp_path / "ledger.jsonl"
    make_ledger(path, 3)
    got: list[int] = []
    done = threading.Event()

    def run() -> None:
        for rec in follow_records(path, poll_s=0.05, stop=done.is_set):
            got.append(rec["i"])

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.1)
    with Ledger(path, rotate_bytes=150, fsync="never") as led:
        for i in range(100, 130):
            led.emit("usage", {"i": i})
            time.sleep(0.002)
    deadline = time.monotonic() + 5
    while len(got) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    done.set()
    t.join(5)
    assert got == list(range(100, 130))


# A base ledger of known records, cut at every possible byte by hypothesis.
_BASE: dict[str, bytes] = {}


def _base_ledger() -> bytes:
    if "data" not in _BASE:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "ledger.jsonl"
            with Ledger(path, fsync="never") as led:
                for i in range(12):
                    led.emit("usage", {"i": i, "text": "é" * (i % 5), "n": [i] * (i % 3)})
            _BASE["data"] = path.read_bytes()
    return _BASE["data"]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_ledger_cut_at_any_byte_keeps_every_complete_record(data):
    """Cut at any byte, a ledger reads as exactly its complete records plus at most one torn tail, which repair removes."""
    base = _base_ledger()
    cut = data.draw(st.integers(0, len(base)))
    complete = base[:cut].count(b"\n")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ledger.jsonl"
        path.write_bytes(base[:cut])
        records = read_records(path)
        assert ids(records) == list(range(complete))
        torn = records.report.torn
        assert len(torn) == (0 if cut == 0 or base[cut - 1:cut] == b"\n" else 1)
        assert all(b.at_tail for b in torn) and not records.report.invalid
        report = verify(path, repair=True)
        assert report.ok
        assert verify(path).torn == ()
        assert ids(read_records(path)) == list(range(complete))
        assert path.read_bytes() == base[: base[:cut].rfind(b"\n") + 1]


def test_reading_a_missing_ledger_creates_no_files(tmp_path):
    """Reading or verifying a path with no ledger leaves the directory untouched (no stray lock file)."""
    list(read_records(tmp_path / "ledger.jsonl"))
    assert not verify(tmp_path / "ledger.jsonl").exists
    assert list(tmp_path.iterdir()) == []
