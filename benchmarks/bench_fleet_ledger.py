"""Fleet ledger analytics: `ledger stats` and `budgets report` over many shards, with the
python reader and with DuckDB, side by side in one run.

Run: ``python benchmarks/bench_fleet_ledger.py [--records 10000000] [--shards 16]
[--dir /tmp/compactor-fleet-bench] [--sample 100000] [--no-python-full] [--clean]``.

1. **Data.** ``--records`` records over ``--shards`` ledgers (``DIR/full/host-NN/``), the
   mix a fleet writes (compactions, usage, budget alerts and bumps, summarizer retries and
   fallbacks, notes). Lines are written directly (compact JSON, the writer's key order),
   after checking on the first records of every shard that they are byte for byte what
   the project's ``Ledger`` writes for the same events and clock. Each shard rotates daily
   like the writer (``ledger.YYYYMMDD-0001.jsonl``); every closed segment but the newest is
   gzipped (level 1), the newest stays plain (not compressed yet) and the active file is
   plain. Shards are written by two processes. Data is reused when ``DIR`` already holds
   the same ``--records``/``--shards`` (``manifest.json``).
2. **Timing.** Each command runs as ``python -m compactor ... --json --engine E`` in a
   subprocess (start-up included), the engines taking turns on the same files:
   ``ledger stats`` and ``budgets report`` with ``--ledger 'DIR/full/host-*/ledger.jsonl*'``.
3. **Same figures.** The JSON of both engines is compared on a ``--sample`` fleet
   (``DIR/sample``, the same generator) and on the full set when the python reader ran
   on it (``--no-python-full`` skips that: at 10M records it takes minutes).

Wall-clock times on a shared machine are noisy; read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compactor.ledger import Ledger  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DAYS = 30
AGENTS = [f"agent-{i:02d}" for i in range(24)]
PROFILES = ["specialist-narrow", "specialist-broad", "role-coordinator", "role-architect"]
BUDGETS = {"specialist-narrow": 20_000, "specialist-broad": 50_000,
           "role-coordinator": 100_000, "role-architect": 150_000}
MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1-mini"]
COMMON = ("schema_version", "ts", "event", "session_id", "agent_id")


_DAYS: dict[int, str] = {}
#: one encoder for every line (json.dumps builds a new one per call when given options)
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _ts(ms: int) -> str:
    """What the writer's format_ts gives for START + ms milliseconds (START is midnight)."""
    day, rest = divmod(ms, 86_400_000)
    if day not in _DAYS:
        _DAYS[day] = (START + timedelta(days=day)).strftime("%Y-%m-%d")
    sec, milli = divmod(rest, 1000)
    minute, sec = divmod(sec, 60)
    hour, minute = divmod(minute, 60)
    return f"{_DAYS[day]}T{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"


def event(rnd: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    """One record's event and fields, the shapes docs/ledger.md and docs/budgets.md list."""
    a = rnd.randrange(len(AGENTS))
    agent, profile = AGENTS[a], PROFILES[a % len(PROFILES)]      # one profile per agent
    base: dict[str, Any] = {"agent_id": agent, "session_id": f"s-{rnd.randrange(5000)}"}
    roll = rnd.random()
    if roll < 0.60:
        before = rnd.randrange(8_000, 200_000)
        after = rnd.randrange(1_000, before // 2)
        return "compaction", {
            **base, "cost_usd": rnd.randrange(0, 40_000) / 1e6,
            "duration_s": rnd.randrange(10, 9_000) / 1e3, "format": "anthropic",
            "messages_removed": rnd.randrange(1, 80), "model": MODELS[i % 3],
            "ratio": round(1 - after / before, 4),
            "removed_hashes": [f"sha256:{rnd.getrandbits(256):064x}" for _ in range(2)],
            "summarizer": "anthropic", "summary_tokens": rnd.randrange(200, 3_000),
            "tokens_after": after, "tokens_before": before}
    budget = BUDGETS[profile]
    if roll < 0.80:
        tokens = int(budget * rnd.uniform(0.1, 1.3))
        return "usage", {
            **base, "alerts": [], "blocked": int(rnd.random() < 0.01),
            "budget_tokens": budget, "calls": rnd.randrange(1, 40), "complexity": "medium",
            "exceeded": tokens > budget, "input_tokens": tokens * 3,
            "output_tokens": rnd.randrange(100, 9_000), "profile": profile, "tokens": tokens,
            "usage_pct": round(100 * tokens / budget, 2)}
    if roll < 0.88:
        level = ("info", "warning", "critical")[rnd.randrange(3)]
        used = int(budget * rnd.uniform(0.75, 1.2))
        return "budget_alert", {
            **base, "budget_tokens": budget, "level": level,
            "percent": round(100 * used / budget, 2), "profile": profile,
            "threshold": {"info": 0.75, "warning": 0.9, "critical": 1.0}[level],
            "used_tokens": used}
    if roll < 0.90:
        return "budget_bump", {**base, "budget_tokens_after": budget * 2,
                               "budget_tokens_before": budget, "from_profile": profile,
                               "profile": profile, "to_profile": None,
                               "used_tokens": budget + rnd.randrange(1, 9_000)}
    if roll < 0.95:
        return "summarizer_retry", {**base, "attempt": rnd.randrange(1, 4), "delay_s": 0.5,
                                    "kind": "timeout", "max_attempts": 4,
                                    "model": MODELS[i % 3], "status": 529,
                                    "summarizer": "anthropic"}
    if roll < 0.97:
        return "summarizer_fallback", {**base, "fallback": "offline", "kind": "connection",
                                       "model": MODELS[i % 3], "status": None,
                                       "summarizer": "anthropic"}
    return "note", {**base, "text": f"deploy {i} done"}


def line(ms: int, name: str, fields: dict[str, Any]) -> str:
    """The line the writer writes for this event: common keys first, fields sorted."""
    rec: dict[str, Any] = {"schema_version": 1, "ts": _ts(ms), "event": name,
                           "session_id": fields.get("session_id"),
                           "agent_id": fields.get("agent_id")}
    for key in sorted(fields):
        if key not in ("session_id", "agent_id"):
            rec[key] = fields[key]
    return _ENCODE(rec) + "\n"


def shard_stream(shard: int, n: int, span_ms: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(ms, event, fields)`` of one shard: n records evenly over ``span_ms``."""
    rnd = random.Random(1_000 + shard)
    step = max(1, span_ms // max(1, n))
    for i in range(n):
        yield shard * 7 + i * step, *event(rnd, i)


def check_shape(shard: int, n: int, span_ms: int, count: int = 200) -> None:
    """The fast lines of a shard's first ``count`` records equal what ``Ledger`` writes.

    Raises:
        SystemExit: they differ (the benchmark would measure the wrong thing).
    """
    items = list(zip(range(count), shard_stream(shard, n, span_ms)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.jsonl"
        clock_at = [START]
        with Ledger(path, fsync="never", rotate_daily=False, clock=lambda: clock_at[0]) as led:
            for _, (ms, name, fields) in items:
                clock_at[0] = START + timedelta(milliseconds=ms)
                led.emit(name, fields)
        real = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fast = [line(ms, name, fields) for _, (ms, name, fields) in items]
    if real != fast:
        bad = next(i for i, (a, b) in enumerate(zip(real, fast)) if a != b)
        raise SystemExit(f"generated line {bad} differs from the Ledger's:\n{real[bad]}{fast[bad]}")


def write_shard(job: tuple[Path, int, int, int]) -> tuple[int, int, int]:
    """Write one shard; returns (files, gzip files, JSON bytes)."""
    folder, shard, n, span_ms = job
    folder.mkdir(parents=True, exist_ok=True)
    segments: list[tuple[str, list[str]]] = []     # (day, lines) per day, in order
    day, chunk = "", []
    for ms, name, fields in shard_stream(shard, n, span_ms):
        text = line(ms, name, fields)
        d = _ts(ms - ms % 86_400_000)[:10].replace("-", "")     # the record's UTC day
        if d != day:
            if chunk:
                segments.append((day, chunk))
            day, chunk = d, []
        chunk.append(text)
    if chunk:
        segments.append((day, chunk))
    files = gz = size = 0
    for k, (d, lines) in enumerate(segments):
        data = "".join(lines).encode("utf-8")
        size += len(data)
        files += 1
        if k == len(segments) - 1:
            (folder / "ledger.jsonl").write_bytes(data)                   # active
        elif k == len(segments) - 2:
            (folder / f"ledger.{d}-0001.jsonl").write_bytes(data)         # not gzipped yet
        else:
            with gzip.open(folder / f"ledger.{d}-0001.jsonl.gz", "wb", compresslevel=1) as f:
                f.write(data)
            gz += 1
    return files, gz, size


def generate(target: Path, records: int, shards: int, workers: int) -> dict[str, Any]:
    """Write (or reuse) a fleet under ``target``; returns its manifest."""
    manifest = target / "manifest.json"
    if manifest.exists():
        known = json.loads(manifest.read_text())
        if known.get("records") == records and known.get("shards") == shards:
            return {**known, "reused": True}
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    span_ms = DAYS * 86_400_000
    per = [records // shards + (s < records % shards) for s in range(shards)]
    check_shape(0, per[0], span_ms)
    t0 = time.perf_counter()
    jobs = [(target / f"host-{s:02d}", s, per[s], span_ms) for s in range(shards)]
    with multiprocessing.Pool(workers) as pool:
        done = pool.map(write_shard, jobs, chunksize=1)
    info = {"records": records, "shards": shards, "files": sum(d[0] for d in done),
            "gzip_files": sum(d[1] for d in done), "json_bytes": sum(d[2] for d in done),
            "disk_bytes": sum(p.stat().st_size for p in target.rglob("*") if p.is_file()),
            "generate_s": round(time.perf_counter() - t0, 1)}
    manifest.write_text(json.dumps(info))
    return {**info, "reused": False}


def run(args: list[str]) -> tuple[float, dict[str, Any]]:
    """Time ``python -m compactor ARGS`` (wall seconds) and parse its JSON output."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "compactor", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=3_600,
                       env=dict(os.environ, COMPACTOR_DEBUG=""))
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"compactor {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return took, json.loads(r.stdout)


COMMANDS = {"ledger stats": ["ledger", "stats"], "budgets report": ["budgets", "report"]}


def measure(folder: Path, engines: list[str]) -> dict[str, dict[str, tuple[float, Any]]]:
    """For each command and engine: (seconds, JSON)."""
    pattern = str(folder / "host-*" / "ledger.jsonl*")
    out: dict[str, dict[str, tuple[float, Any]]] = {}
    for name, argv in COMMANDS.items():
        out[name] = {}
        for engine in engines:
            took, data = run([*argv, "--ledger", pattern, "--json", "--engine", engine])
            out[name][engine] = (took, data)
            print(f"  {name:<15} {engine:<7} {took:8.1f} s", file=sys.stderr, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "compactor-fleet-bench")
    ap.add_argument("--sample", type=int, default=100_000, help="records of the sample fleet")
    ap.add_argument("--no-python-full", action="store_true",
                    help="skip the python reader on the full set (time duckdb only there)")
    ap.add_argument("--workers", type=int, default=2, help="processes writing shards")
    ap.add_argument("--clean", action="store_true",
                    help="delete the data at the end (default: keep it for the next run)")
    a = ap.parse_args()

    print(f"generating {a.records:,} records over {a.shards} shards in {a.dir} ...",
          file=sys.stderr, flush=True)
    full = generate(a.dir / "full", a.records, a.shards, a.workers)
    sample = generate(a.dir / "sample", a.sample, a.shards, a.workers)
    print(f"  {'reused' if full['reused'] else 'generated in ' + str(full['generate_s']) + ' s'}",
          file=sys.stderr, flush=True)

    print("sample:", file=sys.stderr)
    on_sample = measure(a.dir / "sample", ["python", "duckdb"])
    print("full:", file=sys.stderr)
    on_full = measure(a.dir / "full", ["duckdb"] if a.no_python_full else ["python", "duckdb"])

    import duckdb

    print(f"\nFleet ledger analytics: {a.records:,} records, {a.shards} shards, "
          f"{full['files']} segment files ({full['gzip_files']} gzip), "
          f"{full['json_bytes'] / 1e9:.2f} GB of JSON lines, {full['disk_bytes'] / 1e9:.2f} GB "
          f"on disk; {os.cpu_count()} CPUs; duckdb {duckdb.__version__}, Python "
          f"{sys.version.split()[0]}")
    print()
    print("| command | python reader | duckdb | speed-up | same figures, "
          f"{a.sample:,}-record sample | same figures, full set |")
    print("|---|---:|---:|---:|---|---|")
    ok = True
    for name in COMMANDS:
        duck_s, duck = on_full[name]["duckdb"]
        same_sample = on_sample[name]["python"][1] == on_sample[name]["duckdb"][1]
        ok &= same_sample
        if "python" in on_full[name]:
            py_s, py = on_full[name]["python"]
            same_full = py == duck
            ok &= same_full
            cells = [f"{py_s:.1f} s", f"{duck_s:.1f} s", f"{py_s / duck_s:.1f}x",
                     "yes" if same_sample else "NO", "yes" if same_full else "NO"]
        else:
            cells = ["not run", f"{duck_s:.1f} s", "-", "yes" if same_sample else "NO",
                     "not run (--no-python-full)"]
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    stats = on_full["ledger stats"]["duckdb"][1]
    report = on_full["budgets report"]["duckdb"][1]
    print(f"\nfull set: {stats['records']:,} records, {stats['total']['compactions']:,} "
          f"compactions, {stats['total']['tokens_saved']:,} tokens saved, "
          f"{report['invocations']:,} invocations; times are wall seconds of "
          "`python -m compactor ... --json` (start-up included)")
    if a.clean:
        shutil.rmtree(a.dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
