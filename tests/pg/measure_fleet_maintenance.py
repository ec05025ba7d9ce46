"""Measure one `maintain --run` over the 400-day fleet on a folder store and on PostgreSQL
(a script, not collected): ``python tests/pg/measure_fleet_maintenance.py [URL]``
(default ``$COMPACTOR_TEST_PG``; it creates and drops a schema ``fleet_measure``).

The fleet is the one ``tests/maintenance/fleet.py`` builds from ../shared/data (205
sessions, ages over 400 days, every 9th marked); each session is copied into PostgreSQL
with ``export``/``import_`` and the same last activity, first write and mark. Prints both
runs' summaries and wall times, whether the 200 archive entries are identical, and how
many sessions restore as the fleet sent them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "maintenance"), str(HERE.parent)]

import psycopg  # noqa: E402

from compactor._pgstore import PostgresStore  # noqa: E402
from compactor._store import FileSessionStore, canonical_json  # noqa: E402
from compactor.maintenance import entries  # noqa: E402
from fleet import NOW_ISO, build_fleet  # noqa: E402
from pg_support import with_schema  # noqa: E402

SCHEMA = "fleet_measure"


def main() -> int:
    base = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("COMPACTOR_TEST_PG", "")
    if not base:
        print("usage: measure_fleet_maintenance.py URL (or set COMPACTOR_TEST_PG)",
              file=sys.stderr)
        return 2
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        c.execute(f"CREATE SCHEMA {SCHEMA}")
    url = with_schema(base, SCHEMA)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return measure(Path(tmp), url)
    finally:
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def measure(root: Path, url: str) -> int:
    sent = build_fleet(root, HERE.parents[2] / "shared" / "data")["sessions"]
    files = FileSessionStore(root / "store")
    with PostgresStore(url) as pg, psycopg.connect(url, autocommit=True) as c:
        for sid in files.sessions():
            st = files.stat(sid)
            assert st is not None
            pg.import_(sid, *files.export(sid))
            c.execute("UPDATE compactor_sessions SET active_at = %s, created_at = %s, "
                      "marked = %s WHERE session_id = %s",
                      (st.last_active, st.first_seen, st.marked, sid))
    ledger = ["--ledger", str(root / "ledger" / "ledger.jsonl"), "--now", NOW_ISO]
    for name, site in (("folder store", ["--store", str(root / "store")]),
                       ("postgresql", ["--store", url, "--archive", str(root / "pg-archive")])):
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "compactor.cli", "maintain", "--run", *site,
                            *ledger], capture_output=True, text=True, timeout=600)
        print(f"== {name}: exit {p.returncode}, {time.perf_counter() - t0:.2f} s wall\n"
              f"{p.stdout}{p.stderr}")
    on_files = {s: e.data for s, e in entries(root / "store" / "archive").items()}
    on_pg = entries(root / "pg-archive")
    print(f"entries: {len(on_files)} (folder store), {len(on_pg)} (postgresql), identical: "
          f"{on_files == {s: e.data for s, e in on_pg.items()}}")
    restored = sum([canonical_json(m) for m in e.messages()] == sent[s]["messages"]
                   for s, e in on_pg.items())
    with PostgresStore(url) as pg:
        live = pg.sessions()
        restored += sum([canonical_json(m) for m in pg.restore(s)] == sent[s]["messages"]
                        for s in live)
        print(f"postgresql: {len(live)} live sessions, usage {pg.usage()[0]:,} bytes")
    print(f"restore as sent: {restored} / {len(sent)}")
    print(json.dumps({"identical": on_files == {s: e.data for s, e in on_pg.items()},
                      "restored": restored, "sessions": len(sent)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
