"""`ledger stats` over many ledgers: real ledgers written by the project's Ledger on several
shards (rotated, gzipped segments, torn tails, a cut and a corrupt .gz), read by the python
and the DuckDB engine, both compared with figures this file counts from what it wrote."""

from __future__ import annotations

import gzip
import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from compactor.ledger import Ledger
from compactor.ledger._cli import fleet_stats
from compactor.ledger._fleet import Fleet, expand_ledgers

pytest.importorskip("duckdb")

START = datetime(2025, 3, 1, 22, 0, tzinfo=timezone.utc)
#: agent ids as written: strings, none, and values DuckDB cannot type as text
AGENTS: list[Any] = ["planner", "coder", "coder", None, 7, {"team": "ops", "n": [1, 2]}]


class Clock:
    """An aware UTC clock that moves on by `step` at every call."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def _fields(rnd: random.Random, seq: int) -> tuple[str, dict[str, Any]]:
    """One event with the oddities a fleet's ledgers may carry (wrong types, nulls)."""
    event = rnd.choice(["compaction"] * 5 + ["summarizer_fallback", "summarizer_retry",
                                             "budget_alert", "note"])
    fields: dict[str, Any] = {"seq": seq, "agent_id": rnd.choice(AGENTS),
                              "session_id": rnd.choice([None, f"s-{seq % 5}"])}
    if event == "compaction":
        before = rnd.randint(5_000, 120_000)
        fields["tokens_before"] = rnd.choice([before] * 8 + [str(before), float(before)])
        fields["tokens_after"] = rnd.choice([rnd.randint(100, 4_000)] * 9 + [None])
        fields["cost_usd"] = rnd.choice([round(rnd.uniform(0, 0.02), 7)] * 6
                                        + [0.0, None, True, "0.5", 3])
        fields["removed_hashes"] = [f"sha256:{rnd.getrandbits(64):016x}"] * rnd.randint(0, 3)
    return event, fields


def write_fleet(root: Path, shards: int = 4, per_shard: int = 150,
                seed: int = 11) -> list[dict[str, Any]]:
    """Write `shards` ledgers under root/host-N/ledger.jsonl (small segments: rotation and
    gzip on every shard, days change) and return every record written, as the test knows
    it: event, fields, UTC day and ts."""
    rnd = random.Random(seed)
    written: list[dict[str, Any]] = []
    for shard in range(shards):
        clock = Clock(START + timedelta(minutes=shard), timedelta(minutes=23))
        with Ledger(root / f"host-{shard}" / "ledger.jsonl", rotate_bytes=2_500,
                    fsync="never", clock=clock) as ledger:
            for _ in range(per_shard):
                event, fields = _fields(rnd, len(written))
                ledger.emit(event, fields)
                written.append({"event": event, "fields": fields, "at": clock.now})
    return written


def expected_stats(written: list[dict[str, Any]], since: datetime | None = None
                   ) -> dict[str, Any]:
    """The figures `docs/ledger.md` defines, counted from what was written."""
    def zero() -> dict[str, Any]:
        return {"compactions": 0, "tokens_saved": 0, "cost_usd": [], "summarizer_failures": 0,
                "retries": 0, "budget_alerts": 0}

    total, by_agent, by_day = zero(), {}, {}
    records = 0
    for w in written:
        if since is not None and w["at"] < since:
            continue
        records += 1
        agent = w["fields"]["agent_id"]
        stored = json.loads(json.dumps(agent, sort_keys=True))   # the writer sorts nested keys
        key = "(none)" if agent is None else agent if isinstance(agent, str) else str(stored)
        day = w["at"].strftime("%Y-%m-%d")
        for t in (total, by_agent.setdefault(key, zero()), by_day.setdefault(day, zero())):
            f, event = w["fields"], w["event"]
            if event == "compaction":
                t["compactions"] += 1
                b, a = f["tokens_before"], f["tokens_after"]
                if type(b) is int and type(a) is int:
                    t["tokens_saved"] += b - a
                if type(f["cost_usd"]) in (int, float):
                    t["cost_usd"].append(f["cost_usd"])
            t["summarizer_failures"] += event == "summarizer_fallback"
            t["retries"] += event == "summarizer_retry"
            t["budget_alerts"] += event == "budget_alert"

    def done(t: dict[str, Any]) -> dict[str, Any]:
        # docs/ledger.md: each cost counted to the nano-dollar, half up, then summed
        nano = sum(math.floor(c * 1e9 + 0.5) for c in t["cost_usd"])
        return {**t, "cost_usd": nano / 10**9}

    return {"records": records, "total": done(total),
            "by_agent": {k: done(v) for k, v in sorted(by_agent.items())},
            "by_day": {k: done(v) for k, v in sorted(by_day.items())}}


def figures(paths: list[Path], engine: str, since: datetime | None = None) -> dict[str, Any]:
    out = fleet_stats(Fleet(tuple(paths), since), engine).to_dict()
    out.pop("since")
    return out


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    written = write_fleet(tmp_path)
    return expand_ledgers([str(tmp_path / "host-*" / "ledger.jsonl*")]), written


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_both_engines_count_what_was_written_across_rotated_gzip_shards(fleet, engine):
    """Each engine's totals, per-agent and per-day figures over 4 rotated, gzipped shards equal the test's own count."""
    paths, written = fleet
    assert len(paths) == 4
    assert all(len(list(p.parent.glob("*.jsonl.gz"))) >= 3 for p in paths)
    assert figures(paths, engine) == expected_stats(written)


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_since_keeps_the_records_at_or_after_it(fleet, engine):
    """With a since bound in the middle of the second day, each engine counts exactly the records written at or after it."""
    paths, written = fleet
    since = START + timedelta(days=1, hours=5, minutes=7)
    got = figures(paths, engine, since)
    assert got == expected_stats(written, since)
    assert 0 < got["records"] < len(written)


def test_torn_tails_are_skipped_by_both_engines(fleet):
    """A torn last line that is not JSON, and one that is complete JSON but lacks its newline, are counted by neither engine."""
    paths, written = fleet
    with open(paths[1], "ab") as f:
        f.write(b'{"schema_version":1,"ts":"2025-03-0')
    whole = {"schema_version": 1, "ts": "2025-03-02T01:00:00.000Z", "event": "compaction",
             "session_id": None, "agent_id": "coder", "tokens_before": 9_000_000,
             "tokens_after": 1, "cost_usd": 4.0}
    with open(paths[2], "ab") as f:
        f.write(json.dumps(whole, separators=(",", ":")).encode())   # no "\n"
    want = expected_stats(written)
    assert figures(paths, "python") == want
    assert figures(paths, "duckdb") == want


def test_a_cut_and_a_corrupt_gzip_segment_give_the_same_figures_in_both_engines(fleet):
    """A .gz segment cut inside its header and one that is not gzip at all lose their records in both engines, and nothing else."""
    paths, written = fleet
    lost: set[int] = set()
    for shard, keep in ((0, 20), (3, None)):
        gz = sorted(paths[shard].parent.glob("*.jsonl.gz"))[1]
        data = gz.read_bytes()
        lost |= {json.loads(line)["seq"] for line in gzip.decompress(data).splitlines()}
        gz.write_bytes(data[:keep] if keep is not None else b"not a gzip stream at all")
    assert lost
    want = expected_stats([w for w in written if w["fields"]["seq"] not in lost])
    assert figures(paths, "python") == want
    assert figures(paths, "duckdb") == want


def test_a_segment_named_by_the_pattern_reads_its_whole_ledger_once(fleet, tmp_path):
    """A pattern matching segments and active files of the same ledgers reads each ledger once, segments included."""
    _, written = fleet
    paths = expand_ledgers([str(tmp_path / "host-*" / "ledger*"),
                            str(tmp_path / "host-0" / "ledger.jsonl")])
    assert paths == sorted(tmp_path.glob("host-*/ledger.jsonl"))
    assert figures(paths, "duckdb") == expected_stats(written)


def test_lines_that_are_not_records_are_skipped_by_both_engines(fleet):
    """Lines in the middle of a file that are not JSON, not objects, empty, or lack a proper schema_version/ts/event count for neither engine."""
    paths, written = fleet
    junk = [b"{not json\n", b"[1, 2]\n", b'"a string"\n', b"\n", b"   \n",
            b'{"schema_version":"1","ts":"2025-03-02T00:00:00.000Z","event":"compaction",'
            b'"session_id":null,"agent_id":"coder","tokens_before":10,"tokens_after":1}\n',
            b'{"schema_version":true,"ts":"2025-03-02T00:00:00.000Z","event":"note",'
            b'"session_id":null,"agent_id":"coder"}\n',
            b'{"schema_version":1,"ts":20250302,"event":"note","session_id":null,'
            b'"agent_id":"coder"}\n',
            b'{"schema_version":1,"ts":"soon-ish-later","event":"note","session_id":null,'
            b'"agent_id":"coder"}\n',
            b'{"schema_version":1,"ts":"2025-03-02T00:00:00.000Z","event":["compaction"],'
            b'"session_id":null,"agent_id":"coder"}\n']
    for path in paths[:2]:
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:2] + junk + lines[2:]))
    want = expected_stats(written)
    assert figures(paths, "python") == want
    assert figures(paths, "duckdb") == want
